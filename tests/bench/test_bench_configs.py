"""The configs the harness generates for turnout and nginx."""

from __future__ import annotations

import subprocess
from pathlib import Path

import _nginx
import pytest
import yaml
from _turnout import turnout_config


def test_turnout_config_has_the_documented_shape() -> None:
    config = yaml.safe_load(turnout_config(8080, 9901, 9000, access_log_path=None))

    assert config == {
        "listen": {"host": "127.0.0.1", "port": 8080},
        "admin": {"host": "127.0.0.1", "port": 9901},
        "access_log": {"enabled": False},
        "clusters": {"up": {"endpoints": ["127.0.0.1:9000"], "balancer": "round_robin"}},
        "routes": [{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "up"}}],
    }


def test_turnout_access_log_path_is_quoted_safely() -> None:
    path = Path('logs/a dir: with {odd} "quoted" \\ chars/access.log')
    config = yaml.safe_load(turnout_config(1, 2, 3, access_log_path=path))

    assert config["access_log"] == {"enabled": True, "path": str(path)}


def test_proxy_config_keeps_upstream_connections_alive() -> None:
    text = _nginx.proxy_config(Path("/p"), 8080, 9000, access_log=False)

    assert "server 127.0.0.1:9000;" in text
    assert "keepalive 256;" in text
    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text
    assert "access_log off;" in text
    assert "worker_processes 1;" in text
    assert "listen 127.0.0.1:8080;" in text


@pytest.mark.parametrize("access_log", [False, True])
def test_nginx_accepts_the_generated_configs(tmp_path: Path, access_log: bool) -> None:
    nginx = _nginx.nginx_path()
    if nginx is None:
        pytest.skip("nginx is not installed")
    version = _nginx.nginx_version(nginx)
    configs = {
        "upstream": _nginx.upstream_config(tmp_path / "upstream", 18080),
        "proxy": _nginx.proxy_config(tmp_path / "proxy", 18081, 18080, access_log),
    }
    for name, text in configs.items():
        prefix = tmp_path / name
        _nginx.write_config(prefix, text)
        argv = [*_nginx.nginx_argv(nginx, prefix, version), "-t"]
        checked = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert checked.returncode == 0, checked.stderr
