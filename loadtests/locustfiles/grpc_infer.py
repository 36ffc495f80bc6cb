"""Scenario `grpc`: gRPC `ModelInfer` calls straight to an inference worker, timed as Locust requests.

This measures a worker's own gRPC service (`inference.GRPCInferenceService/ModelInfer`, default the
demo's worker A on 127.0.0.1:8011, which serves risk version 1 and diabetes), not the gateway's gRPC
front door, which the demo does not open. A custom Locust User opens one channel per user, sends one
random dataset row per call (raw tensor contents, as tritonclient does), checks the answer against
the model's contract and fires Locust's request event itself (request type "grpc"); the status
column of the summary holds gRPC code names. File name: `grpc.py` would shadow grpcio when Locust
imports it. Options: --grpc-target, --grpc-model (risk|diabetes), --grpc-version, --max-wait-ms.
"""

from __future__ import annotations

import random
import time
from typing import Any, Final

import grpc
import grpc.experimental.gevent as grpc_gevent
import numpy as np
from locust import User, task

from gateway.core.errors import BadRequest
from gateway.core.protocols.oip_v2 import InferRequest, Tensor
from inference_workers.grpc_codec import pb_grpc, request_to_proto, response_from_proto
from loadtests.arguments import DEMO_GRPC_TARGET, require_loopback_target
from loadtests.inference import DIABETES, RISK, Output, contract_problem, dataset_rows
from loadtests.locustfiles.common import option, register_scenario
from loadtests.observer import STATUS_KEY, TrafficObserver

# gRPC's own threads would block gevent's loop; this makes its I/O cooperative. Before any channel.
grpc_gevent.init_gevent()

MODELS: Final = {model.name: model for model in (RISK, DIABETES)}
# Read once per Locust process; immutable from then on.
ROWS: Final = {name: tuple(tuple(row) for row in dataset_rows(model)) for name, model in MODELS.items()}
# A tabular model answers in milliseconds; a call still open after this is a failure, not a slow one.
CALL_TIMEOUT_S: Final = 10.0


class AnswerProblem(Exception):
    """The call succeeded but its answer breaks the model's contract."""


def _options(parser: Any) -> None:
    parser.add_argument("--grpc-target", default=DEMO_GRPC_TARGET, help="the worker's gRPC host:port")
    parser.add_argument("--grpc-model", default=RISK.name, choices=sorted(MODELS))
    parser.add_argument("--grpc-version", default="1", help="model version ('' for the worker's default)")


register_scenario(_options, lambda: TrafficObserver("grpc", unit_policy=None))


class GrpcInferUser(User):
    def on_start(self) -> None:
        self.max_wait_s = float(option(self.environment, "max_wait_ms")) / 1000.0
        self.target = require_loopback_target(str(option(self.environment, "grpc_target")))
        self.model = MODELS[str(option(self.environment, "grpc_model"))]
        self.version = str(option(self.environment, "grpc_version")) or None
        self.rows = ROWS[self.model.name]
        self.call_name = f"ModelInfer {self.model.name} v{self.version or 'default'}"
        self.channel = grpc.insecure_channel(self.target)
        self.model_infer = pb_grpc.GRPCInferenceServiceStub(self.channel).ModelInfer

    def on_stop(self) -> None:
        self.channel.close()

    def wait_time(self) -> float:
        return random.random() * self.max_wait_s

    @task
    def infer(self) -> None:
        features = np.asarray([random.choice(self.rows)], dtype=np.float32)
        message = request_to_proto(
            self.model.name, self.version, InferRequest([Tensor("features", "FP32", features)])
        )
        status, length, exception = "OK", 0, None
        started_at = time.time()
        clock = time.perf_counter()
        try:
            reply = self.model_infer(message, timeout=CALL_TIMEOUT_S)
            length = reply.ByteSize()
            outputs = {
                t.name: Output(t.datatype, t.shape, t.data) for t in response_from_proto(reply).outputs
            }
            problem = contract_problem(self.model, outputs, rows=1)
            if problem is not None:
                exception = AnswerProblem(problem)
        except grpc.RpcError as error:
            status, exception = error.code().name, error
        except BadRequest as error:  # an answer the codec cannot read
            exception = AnswerProblem(str(error))
        elapsed_ms = (time.perf_counter() - clock) * 1000.0
        hooks: Any = self.environment.events
        hooks.request.fire(
            request_type="grpc",
            name=self.call_name,
            response_time=elapsed_ms,
            response_length=length,
            response=None,
            context={STATUS_KEY: status},
            exception=exception,
            start_time=started_at,
            url=self.target,
        )
