"""The deployment files, checked without Docker: the Dockerfile's instructions, the build
context (.dockerignore) holding the whole package, compose.yaml and the Prometheus files
agreeing with each other and with the daemon, and the image's health check and default
command run for real against a server. Also a smoke run of bench/sizing.py (it judges no
numbers)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from helpers import wait_until
from package_layout import wheel_files

from oibus.daemon.metrics import Metrics
from oibus.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
METRICS_PORT = 9464


# -- reading a Dockerfile ----------------------------------------------------------------
def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(path: Path = DOCKERFILE) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (those before the first FROM are stage 0's
    global ARGs and are not returned)."""
    found: list[list[tuple[str, str]]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            found.append([])
        if found:
            found[-1].append((word, rest))
    return found


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    """ENV instructions in the KEY=value form (the only one this Dockerfile uses)."""
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {rest!r}: use KEY=value"
                env[key] = value
    return env


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
    return args


def runtime() -> list[tuple[str, str]]:
    return stages()[-1]


def healthcheck_argv() -> list[str]:
    (text,) = [rest for word, rest in runtime() if word == "HEALTHCHECK"]
    _, _, command = text.partition("CMD ")
    return exec_form(command.strip())


def oibus_argv(argv: list[str]) -> list[str]:
    """An image command (``oibus …``) run with this test's installation of oibus."""
    assert argv[0] == "oibus"
    script = Path(sys.executable).with_name("oibus")
    if script.exists():
        return [str(script), *argv[1:]]
    return [sys.executable, "-m", "oibus.cli", *argv[1:]]  # pragma: no cover


# -- the Dockerfile ----------------------------------------------------------------------
def test_dockerfile_is_multi_stage_with_a_slim_runtime() -> None:
    built = stages()
    assert len(built) >= 2
    args = global_args()
    images = [rest.split()[0] for word, rest in instructions() if word == "FROM"]
    resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image) for image in images]
    assert resolved[-1] == "python:3.11-slim"
    build_stage = re.search(r"\bAS\s+(\w+)", next(r for w, r in built[0] if w == "FROM"), re.I)
    assert build_stage is not None
    # the runtime installs oibus from the build stage's wheels, and from nothing else
    (install,) = [rest for word, rest in runtime() if word == "RUN" and "pip install" in rest]
    assert f"from={build_stage.group(1)}" in install
    assert "--no-index" in install and "--find-links" in install
    assert "COPY" not in {word for word, _ in runtime()}, "no wheels or sources copied in"


def test_dockerfile_entrypoint_cmd_user_healthcheck() -> None:
    final = runtime()
    words = [word for word, _ in final]
    (entrypoint,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    (cmd,) = [rest for word, rest in final if word == "CMD"]
    assert exec_form(entrypoint) == ["oibus"]
    assert exec_form(cmd) == ["daemon"]
    assert healthcheck_argv() == ["oibus", "daemon", "--check"]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    last_run = max(i for i, word in enumerate(words) if word == "RUN")
    assert words.index("USER") > last_run, "USER comes after the last RUN"


def test_dockerfile_serves_metrics_and_bakes_no_secret() -> None:
    final = runtime()
    env = env_of(final)
    assert env["OIBUS_HTTP_HOST"] == "0.0.0.0"
    assert env["OIBUS_HTTP_PORT"] == str(METRICS_PORT)
    exposed = {p for word, rest in final if word == "EXPOSE" for p in rest.split()}
    assert str(METRICS_PORT) in exposed or f"{METRICS_PORT}/tcp" in exposed
    for stage in stages():
        for key, value in env_of(stage).items():
            assert not re.search(r"PASS|SECRET|TOKEN|CREDENTIAL|API_?KEY", key, re.I), key
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{key} holds a password"
        assert "OIBUS_REDIS_URL" not in env_of(stage), "the Redis URL is given at run time"
    arg_names = [rest.split("=")[0] for word, rest in instructions() if word == "ARG"]
    assert not [a for a in arg_names if re.search(r"PASS|SECRET|TOKEN", a, re.I)]


def test_the_image_environment_is_what_the_daemon_reads() -> None:
    """The ENV names the image sets are options of ``oibus daemon`` (so they take effect)."""
    from oibus.cli import main

    daemon = main.commands["daemon"]
    read = {p.envvar for p in daemon.params if isinstance(getattr(p, "envvar", None), str)}
    oibus_env = {k for k in env_of(runtime()) if k.startswith("OIBUS_")}
    assert oibus_env <= read
    assert "OIBUS_REDIS_URL" in read


def test_image_default_command_help_runs() -> None:
    (entrypoint,) = [rest for word, rest in runtime() if word == "ENTRYPOINT"]
    (cmd,) = [rest for word, rest in runtime() if word == "CMD"]
    argv = oibus_argv([*exec_form(entrypoint), *exec_form(cmd), "--help"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "--check" in done.stdout and "--http-port" in done.stdout


# -- the build context -------------------------------------------------------------------
def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (no ``!`` exceptions) as a regex over slash paths."""
    out, i = "", 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is out when it, or a folder it is in, matches a pattern."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(_pattern_regex(p).fullmatch(x) for p in patterns for x in prefixes)


def copy_sources() -> list[str]:
    """What the build stage COPYs from the context."""
    sources: list[str] = []
    for word, rest in stages()[0]:
        if word == "COPY" and "--from" not in rest:
            sources += rest.split()[:-1]
    return sources


def test_dockerignore_keeps_out_environments_caches_and_data() -> None:
    patterns = ignore_patterns()
    assert not [p for p in patterns if p.startswith("!")], "the matcher here has no exceptions"
    for path in [
        ".venv",
        ".venv/lib/python3.11/site-packages/x.py",
        ".git",
        ".git/HEAD",
        "bus/__pycache__/ops.cpython-311.pyc",
        "sdk/_async/__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".oibus/appendonlydir/appendonly.aof.1.incr.aof",
        "dump.rdb",
        ".env",
    ]:
        assert ignored(path, patterns), path
    for path in copy_sources():
        assert not ignored(path, patterns), f"{path} is COPYed but ignored"


def test_build_context_holds_the_whole_package(tmp_path: Path) -> None:
    """Build the context the way the build stage sees it (its COPY sources less what
    .dockerignore drops), build the wheel from it as that stage does, and check that it is
    the package: every module and Lua script, and it imports and loads its scripts."""
    patterns = ignore_patterns()
    context = tmp_path / "src"
    context.mkdir()

    def skip(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(ROOT).as_posix()
        return {n for n in names if ignored(f"{rel}/{n}", patterns)}

    for source in copy_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, symlinks=True, ignore=skip)
        else:
            shutil.copy2(origin, context / source)
    # the build stage's `pip wheel .`, then the wheel unpacked as the runtime installs it
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--quiet", "--wheel-dir", str(wheels), str(context)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("oibus-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        names = {n for n in archive.namelist() if ".dist-info/" not in n}
    assert names == wheel_files()
    probe = (
        "import oibus, oibus.cli; from oibus.bus.registry import default_registry; "
        "print(oibus.__file__); print(len(default_registry()))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stderr
    where, count = done.stdout.split()
    assert Path(where).resolve().is_relative_to(site.resolve())
    from oibus.bus.registry import default_registry

    assert int(count) == len(default_registry())


# -- compose and Prometheus ------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container side of a service's published ports (short or long syntax)."""
    found: set[int] = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.add(int(port["target"]))
        else:
            found.add(int(str(port).split(":")[-1].split("/")[0]))
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def redis_settings(command: str | list[str]) -> dict[str, str]:
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    assert words[0] == "redis-server"
    settings: dict[str, str] = {}
    for i, word in enumerate(words):
        if word.startswith("--") and i + 1 < len(words):
            settings[word[2:]] = words[i + 1]
    return settings


def test_compose_redis_is_safe() -> None:
    redis_service = load(COMPOSE)["services"]["redis"]
    assert str(redis_service["image"]).startswith("redis:7.2")
    settings = redis_settings(redis_service["command"])
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["maxmemory-policy"] == "noeviction"
    assert 6379 in container_ports(redis_service)
    assert any(str(v).split(":")[1] == "/data" for v in redis_service["volumes"])
    check = redis_service["healthcheck"]["test"]
    assert "redis-cli" in check and "ping" in check


def test_compose_daemon_and_prometheus_agree() -> None:
    compose = load(COMPOSE)
    services = compose["services"]
    daemon = services["daemon"]
    build = daemon["build"]
    assert (build if isinstance(build, str) else build.get("context", ".")) == "."
    assert environment(daemon)["OIBUS_REDIS_URL"] == "redis://redis:6379/0"
    assert daemon["depends_on"]["redis"]["condition"] == "service_healthy"
    port = int(env_of(runtime())["OIBUS_HTTP_PORT"])
    assert port in container_ports(daemon)

    prometheus = services["prometheus"]
    assert str(prometheus["image"]).startswith("prom/prometheus")
    assert 9090 in container_ports(prometheus)
    mounts = bind_mounts(prometheus)
    assert (ROOT / mounts["/etc/prometheus/prometheus.yml"]).resolve() == PROMETHEUS

    config = load(PROMETHEUS)
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"daemon:{port}" in targets
    for target in targets:
        host, _, scraped = target.partition(":")
        assert host in services and int(scraped) in container_ports(services[host])
    for rule_file in config.get("rule_files", []):
        assert rule_file in mounts, f"{rule_file} is not mounted into the container"
        assert (ROOT / mounts[rule_file]).is_file()


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's volumes: container path -> source."""
    mounts = {}
    for volume in service["volumes"]:
        source, target = str(volume).split(":")[:2]
        mounts[target] = source
    return mounts


def metric_series() -> set[str]:
    """Every series name the daemon can export."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_count", "_sum"],
        }.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def test_alert_rules_and_docs_name_real_metrics() -> None:
    known = metric_series()
    rules = [rule for group in load(ALERTS)["groups"] for rule in group["rules"]]
    assert {"OibusNoLiveDaemon", "OibusDeadLettersGrowing", "OibusConsumerGroupLag"} <= {
        r["alert"] for r in rules
    }
    for rule in rules:
        for name in re.findall(r"\boibus_\w+", rule["expr"]):
            assert name in known, f"{rule['alert']}: {name} is not a daemon metric"
    families = {family.name for family in Metrics().registry.collect()}
    for name in set(re.findall(r"\boibus_[a-z_]+[a-z]", OPERATIONS.read_text())):
        assert name in known or name in families, f"docs/operations.md: {name}"


# -- the health check and the default command, for real ---------------------------------
def _servers() -> list[str]:
    return ["embedded"] + (["env"] if os.environ.get("OIBUS_TEST_REDIS_URL") else [])


@pytest.fixture(params=_servers())
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        return str(request.getfixturevalue("embedded_url"))
    return os.environ["OIBUS_TEST_REDIS_URL"]


@pytest.fixture
def clean_namespace(server_url: str, namespace: str) -> Iterator[str]:
    yield namespace
    raw = redis.Redis.from_url(server_url)
    try:
        for key in [*raw.scan_iter(f"{{{namespace}:*"), *raw.scan_iter(f"{{{namespace}}}*")]:
            raw.delete(key)
    finally:
        raw.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_healthcheck_follows_a_live_daemon(server_url: str, clean_namespace: str) -> None:
    """The image's HEALTHCHECK command, with the image's environment: 1 with no daemon,
    0 while the image's default command runs one, 1 again once it stopped; meanwhile the
    daemon serves /healthz and /metrics where Prometheus scrapes them."""
    image_env = env_of(runtime())
    env = {
        **os.environ,
        **image_env,
        "OIBUS_REDIS_URL": server_url,
        "OIBUS_NAMESPACE": clean_namespace,
    }
    check = oibus_argv(healthcheck_argv())

    def healthy() -> int:
        done = subprocess.run(
            check, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode in (0, 1), done.stderr
        return done.returncode

    assert healthy() == 1
    # the default command, on a free port of the loopback instead of the image's 0.0.0.0
    port = free_port()
    daemon_env = {
        **env,
        "OIBUS_HTTP_HOST": "127.0.0.1",
        "OIBUS_HTTP_PORT": str(port),
        "OIBUS_HEARTBEAT_TTL": "1",
    }
    (cmd,) = [rest for word, rest in runtime() if word == "CMD"]
    proc = subprocess.Popen(
        oibus_argv(["oibus", *exec_form(cmd)]),
        env=daemon_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: healthy() == 0, 30), "the daemon never came up"
        status, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "oibus_daemon_loop_iterations_total" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert healthy() == 1  # a clean stop drops the heartbeat at once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


# -- the gateway (the OpenIntent HTTP API) ----------------------------------------------
GATEWAY_PORT = 8000


def gateway_service() -> dict[str, Any]:
    service: dict[str, Any] = load(COMPOSE)["services"]["gateway"]
    return service


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_compose_gateway_serves_the_http_api_with_a_health_check() -> None:
    services = load(COMPOSE)["services"]
    gateway = gateway_service()
    assert gateway["image"] == services["daemon"]["image"], "one image runs every command"
    command = [str(w) for w in gateway["command"]]
    assert command[0] == "serve"
    assert option(command, "--host") == "0.0.0.0"
    # given on the command line: the image's OIBUS_HTTP_PORT is the daemon's metrics port
    assert int(option(command, "--port")) == GATEWAY_PORT
    assert GATEWAY_PORT in container_ports(gateway)
    assert (
        environment(gateway)["OIBUS_REDIS_URL"]
        == environment(services["daemon"])["OIBUS_REDIS_URL"]
    )
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    test = [str(w) for w in gateway["healthcheck"]["test"]]
    assert test[0] == "CMD"
    assert f"http://127.0.0.1:{GATEWAY_PORT}/health" in " ".join(test)
    exposed = {p for word, rest in runtime() if word == "EXPOSE" for p in rest.split()}
    assert str(GATEWAY_PORT) in exposed
    from oibus.cli import main

    serve = main.commands["serve"]
    assert {"--host", "--port", "--redis-url"} <= {o for p in serve.params for o in p.opts}


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gateway_command_and_health_check_for_real(embedded_url: str, tmp_path: Path) -> None:
    """compose's gateway command with the image's environment (its OIBUS_HTTP_PORT is the
    metrics port: the command's --port must win), on a free loopback port instead of
    0.0.0.0:8000, and compose's health check run against it: 0 while it serves, not 0
    once it stopped."""
    port = free_port()
    command = [str(w) for w in gateway_service()["command"]]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    env = {**os.environ, **env_of(runtime()), "OIBUS_REDIS_URL": embedded_url}
    check = [str(w) for w in gateway_service()["healthcheck"]["test"][1:]]
    assert check[0] == "python"
    check = [sys.executable, *check[1:-1], check[-1].replace(str(GATEWAY_PORT), str(port))]

    def healthy() -> int:
        done = subprocess.run(check, capture_output=True, timeout=30, check=False, cwd=tmp_path)
        return done.returncode

    assert healthy() != 0
    proc = subprocess.Popen(
        oibus_argv(["oibus", *command]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: healthy() == 0, 30), "the gateway never answered /health"
        status, body = _get(f"http://127.0.0.1:{port}/openapi.json")
        assert status == 200 and json.loads(body)["openapi"].startswith("3.1")
        status, _ = _get(f"http://127.0.0.1:{port}/api/v1/intents")
        assert status == 401  # no key
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal it caught (so a supervisor
        # sees why it stopped): killed by SIGTERM after a graceful shutdown, or 0
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        assert "Traceback" not in (proc.stdout.read() if proc.stdout else "")
        assert healthy() != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


# -- bench/sizing.py ---------------------------------------------------------------------
@pytest.mark.real
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sizing_smoke_runs_and_cleans_up(embedded_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.sizing", "--smoke", "--redis-url", embedded_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for text in ("bare intent", "per lease", "per bus pointer", "sum of MEMORY USAGE"):
        assert text in done.stdout
    assert re.search(r"Cleanup: deleted [\d,]+ keys, 0 left\.", done.stdout), done.stdout


GRAFANA = ROOT / "deploy" / "grafana"


def test_grafana_is_provisioned_with_a_dashboard_of_real_metrics() -> None:
    """compose.yaml provisions Grafana beside Prometheus: the data source points at the
    Prometheus service, the dashboard folder is mounted where the provider reads, and
    every panel's query names series the daemon exports."""
    services = load(COMPOSE)["services"]
    grafana = services["grafana"]
    assert str(grafana["image"]).startswith("grafana/grafana")
    assert 3000 in container_ports(grafana)
    mounts = bind_mounts(grafana)
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"
    dashboards = (ROOT / mounts["/var/lib/grafana/dashboards"]).resolve()
    sources = load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert sources[0]["url"] == "http://prometheus:9090" and "prometheus" in services
    provider = load(GRAFANA / "provisioning" / "dashboards" / "oibus.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((dashboards / "oibus.json").read_text())
    known = metric_series()
    uid = sources[0]["uid"]
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid
            names = set(re.findall(r"\boibus_[a-z_]+", target["expr"]))
            assert names and names <= known, (panel["title"], names - known)
            used |= names
    # every metric family has a panel
    families = {
        n.removesuffix("_bucket").removesuffix("_total")
        for n in known
        if not n.endswith(("_count", "_sum"))
    }
    assert {n.removesuffix("_bucket").removesuffix("_total") for n in used} == families
