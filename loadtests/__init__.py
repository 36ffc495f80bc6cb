"""Locust load tests against the demo stack: scenarios in `locustfiles/`, the runner in `run.py`.

Only the locustfiles import Locust (which patches the standard library with gevent when imported);
every other module here is plain Python, so the runner and the tests never load gevent.
"""
