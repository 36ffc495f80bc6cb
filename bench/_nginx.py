"""nginx for benchmarks: as the fixed-response upstream, and as the reference reverse proxy.

Each instance runs in the foreground as the current user inside its own temporary prefix directory
(pid file, logs and temp paths all there), so it needs no root, touches nothing outside the prefix,
and dies with its process group.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

# `-e` (error log path chosen on the command line, before the config is read) arrived in 1.19.5;
# older versions first open their compiled-in log path, which a non-root user usually cannot write.
_ERROR_LOG_FLAG_SINCE = (1, 19, 5)
# Connections per worker: the largest concurrency measured (128) twice over, client and upstream
# side, with generous room; nginx's default of 512 would be close at 128 without keep-alive reuse.
_WORKER_CONNECTIONS = 4096
# Requests served per keep-alive connection before nginx closes it. The default (1000) would make the
# load generator reconnect every 1000 requests and measure connection set-up; the bench wants reuse.
_KEEPALIVE_REQUESTS = 1_000_000
# Idle keep-alive connections nginx keeps open to the upstream: at least the highest concurrency
# measured, so nginx never churns upstream connections (with 64 it opened and closed extra ones at
# concurrency 128, which made it look slower than a tuned nginx is).
_UPSTREAM_KEEPALIVE = 256
# The same fields as turnout's access-log line, as one JSON object (escape=json makes every value a
# valid JSON string body); route and cluster are constants because the bench has one of each.
JSON_LOG_FORMAT = (
    'log_format bench_json escape=json \'{"ts":$msec,"request_id":"$request_id",'
    '"method":"$request_method","path":"$uri","route":"all","cluster":"up",'
    '"endpoint":"$upstream_addr","status":$status,"duration_s":$request_time,'
    '"upstream_s":"$upstream_response_time","bytes_in":$request_length,'
    '"bytes_out":$bytes_sent,"client":"$remote_addr"}\';'
)
# How a deployed nginx writes its access log: through a 64 KiB buffer, flushed at least every second
# (turnout's own log promises a line on disk within a second too).
JSON_LOG_BUFFERING = "buffer=64k flush=1s"
# Request bodies up to this size stay in memory (turnout never writes one to disk); the default is
# two pages (16 KiB), just about the deployed scenario's large body, past which nginx uses temp files.
_BODY_BUFFER = "64k"


def nginx_path() -> str | None:
    return shutil.which("nginx")


def nginx_version(nginx: str) -> tuple[int, ...]:
    """nginx's version as numbers (it prints ``nginx version: nginx/1.22.1`` on stderr)."""
    completed = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10, check=False)
    match = re.search(r"nginx/(\d+(?:\.\d+)*)", completed.stderr + completed.stdout)
    if match is None:
        raise RuntimeError(f"cannot read the nginx version from {completed.stderr!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def nginx_argv(nginx: str, prefix: Path, version: tuple[int, ...]) -> list[str]:
    """Foreground nginx reading ``prefix/nginx.conf`` with every path relative to ``prefix``."""
    argv = [nginx, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
    if version >= _ERROR_LOG_FLAG_SINCE:
        argv[1:1] = ["-e", str(prefix / "error.log")]
    return argv


def _main_section(prefix: Path) -> str:
    lines = ["worker_processes 1;", f"pid {prefix}/nginx.pid;", f"error_log {prefix}/error.log warn;"]
    if os.geteuid() == 0:
        # Run as root, nginx would hand its worker to "nobody", which cannot read the temp prefix.
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        lines.append(f"user {user} {group};")
    lines.append(f"events {{ worker_connections {_WORKER_CONNECTIONS}; }}")
    return "\n".join(lines)


def _http_common(prefix: Path) -> str:
    temp_paths = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    lines = [f"    {name}_temp_path {prefix}/{name}_temp;" for name in temp_paths]
    lines.append(f"    keepalive_requests {_KEEPALIVE_REQUESTS};")
    return "\n".join(lines)


def upstream_config(prefix: Path, port: int) -> str:
    """nginx as the tiny upstream: every request gets 200 with the 2-byte body ``ok``."""
    return f"""{_main_section(prefix)}
http {{
{_http_common(prefix)}
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "ok";
        }}
    }}
}}
"""


def proxy_config(
    prefix: Path,
    port: int,
    upstream_port: int,
    access_log: bool,
    extra_upstream_ports: Sequence[int] = (),
    json_log: bool = False,
) -> str:
    """nginx as a keep-alive reverse proxy in front of 127.0.0.1:``upstream_port`` (and the
    ``extra_upstream_ports``, round robin). ``json_log``: the access log is one JSON line per request,
    the fields of turnout's line, through a buffer (the deployed scenario)."""
    if json_log:
        log_line = (
            f"{JSON_LOG_FORMAT}\n    access_log {prefix}/access.log bench_json {JSON_LOG_BUFFERING};\n"
            f"    client_body_buffer_size {_BODY_BUFFER};"
        )
    elif access_log:
        log_line = f"access_log {prefix}/access.log;"
    else:
        log_line = "access_log off;"
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in (upstream_port, *extra_upstream_ports))
    return f"""{_main_section(prefix)}
http {{
{_http_common(prefix)}
    {log_line}
    upstream up {{
{servers}
        keepalive {_UPSTREAM_KEEPALIVE};
        keepalive_requests {_KEEPALIVE_REQUESTS};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def write_config(prefix: Path, text: str) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(text)
