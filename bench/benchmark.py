"""Measure every session factory against the same app's no-session limit, in one run.

    python3 tasks.py bench [--seconds 2] [--suite]

For each factory: render the template, install the project as its README says, then
measure with production.ini (a fresh secret in the environment; a private Redis, or for
the SQL store an SQLite file or a private PostgreSQL server):
in-process (WebTest, one fixed cookie sent with every request) and served by waitress
under wrk on loopback, the rates of the counter page and of the flash POST-redirect-GET
round, each as a ratio to /limit (the counter page's template without the session);
the Set-Cookie size with three flash messages queued; the render time; and, with
--suite, the wall time of `python3 tasks.py test`. Prints a Markdown report and writes
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    DATABASES,
    FACTORIES,
    REDIS_TOPOLOGIES,
    ROOT,
    clean_environment,
    free_port,
    install,
    production_env,
    project_python,
    render,
    running,
    with_demo_users,
)
from bench.load import case_name, session_store

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "latest.json"
SLUG = "benchapp"
WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
SERVER_THREADS = int(os.environ.get("BENCH_SERVER_THREADS", "4"))
WRK_CONNECTIONS = SERVER_THREADS  # no queueing: waitress logs every queued task
# Served figures: this many rounds, the pages taking turns.
WRK_ROUNDS = 7
# The app gets a core of its own; wrk and the store's servers share the others, as if on
# other machines.
CORES = sorted(os.sched_getaffinity(0))
APP_CORES = set(CORES[:1])
CLIENT_CORES = set(CORES[1:]) or APP_CORES
# Requests per page load: a flash round is the POST and the GET it redirects to.
REQUESTS = {
    "counter": 1,
    "flash_round": 2,
    "ping": 1,
    "stock": 1,
    "counter_signed_in": 1,
    "sign_in": 2,  # the form and its POST
    "floor": 1,
}
# The stock library a user would pick instead of each choice (bench_app.py configures it),
# and what must be installed for it beside the project.
STOCK_PACKAGES = {
    "signed_cookie": "Pyramid's SignedCookieSessionFactory",
    "encrypted_cookie": "pyramid_nacl_session's EncryptedCookieSessionFactory",
    "redis": "pyramid_session_redis's RedisSessionFactory",
    "database": "pyramid_beaker, Beaker's ext:database (SQLAlchemy)",
}
STOCK_REQUIREMENTS = {"redis": ["pyramid_session_redis"], "database": ["pyramid_beaker"]}
# The stock libraries know one Redis server only (no Sentinel, no Cluster).
NO_STOCK = {"sentinel", "cluster"}
# Answers that render a project for its store, beside the factory: a PostgreSQL project
# depends on psycopg (the bench's own server's URL is given in the environment).
RENDER_ANSWERS = {
    "postgresql": {"database_url": "postgresql+psycopg://postgres@127.0.0.1/sessions"}
}


def pin_to(cores: set[int]):
    """A preexec_fn that runs the child process on ``cores`` only."""
    return lambda: os.sched_setaffinity(0, cores)


def children(pid: int) -> list[int]:
    """The processes ``pid`` has started (PostgreSQL's background workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def pin_server(pid: int, cores: set[int]) -> None:
    """Run a server and the processes it has started on ``cores``; what it starts later
    (a PostgreSQL backend per connection) inherits them."""
    for process in [pid, *children(pid)]:
        with suppress(ProcessLookupError):  # it has just ended
            os.sched_setaffinity(process, cores)


def bench_app(project: Path, command: str, *extra: str) -> list[str]:
    """The command line that runs bench_app.py ``command`` with the project's python."""
    script = str(BENCH_DIR / "bench_app.py")
    ini = with_demo_users(project)
    return [str(project_python(project)), script, command, SLUG, ini, *extra]


def in_process(project: Path, env: dict[str, str], seconds: float, factory: str) -> dict:
    """In-process rates, measured by bench_app.py inside the project's environment."""
    result = subprocess.run(
        bench_app(project, "inprocess", str(seconds), factory),
        cwd=project,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=pin_to(APP_CORES),
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench_app.py inprocess failed:\n{result.stderr}")
    return json.loads(result.stdout)


def wrk(url: str, seconds: float, *options: str, script_args: tuple[str, ...] = ()) -> float:
    """Requests per second that wrk reaches against ``url``."""
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds
    command = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", duration, *options, url]
    if script_args:
        command += ["--", *script_args]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, preexec_fn=pin_to(CLIENT_CORES)
    ).stdout
    match = WRK_RATE.search(output)
    if not match:
        raise ValueError(f"no rate in wrk's output:\n{output}")
    return float(match.group(1))


def served(project: Path, env: dict[str, str], seconds: float, inside: dict, factory: str) -> list:
    """WRK_ROUNDS rounds of rates under wrk, the pages taking turns, served by waitress.

    The pages are those measured in-process (``inside``), with its cookies and CSRF token.
    """
    cookie, token, floor_cookie = inside["cookie"], inside["token"], inside["floor_cookie"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with_cookie = ("-H", f"Cookie: {cookie}")
    flash = ("-s", str(BENCH_DIR / "flash_round.lua"))
    loads = {
        "limit": lambda: wrk(f"{base}/limit", seconds, *with_cookie),
        "counter": lambda: wrk(f"{base}/", seconds, *with_cookie),
        "floor": lambda: wrk(f"{base}/floor", seconds, "-H", f"Cookie: {floor_cookie}"),
        "flash_round": lambda: wrk(base, seconds, *flash, script_args=(token, cookie)) / 2,
        "ping": lambda: wrk(f"{base}/ping", seconds, *with_cookie),
    }
    loads = {name: load for name, load in loads.items() if name in inside["rounds"][0]}
    with running(
        bench_app(project, "serve", str(port), str(SERVER_THREADS), factory),
        port,
        cwd=project,
        env=clean_environment(**env),
        preexec_fn=pin_to(APP_CORES),
    ):
        wrk(f"{base}/", 1, *with_cookie)  # warm up: template compilation, connection pools
        return [{name: load() for name, load in loads.items()} for _ in range(WRK_ROUNDS)]


def summary(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Median rates, and for each page the median of its per-round ratios to the limit.

    Rounds are paired: a page is compared with the limit measured just before it, so a
    slow spell of the (shared, virtual) machine moves both sides of a ratio together.
    """
    figures = {page: statistics.median(done[page] for done in rounds) for page in rounds[0]}
    for page in rounds[0].keys() - {"limit"}:
        ratios = [REQUESTS[page] * done[page] / done["limit"] for done in rounds]
        figures[f"{page}_ratio"] = statistics.median(ratios)
        figures[f"{page}_ratio_range"] = [min(ratios), max(ratios)]
    if "floor" in rounds[0]:
        # Ours against the floor measured right after it in the same round (not each
        # against a limit measured seconds before): the pair moves with the machine.
        ratios = [done["counter"] / done["floor"] for done in rounds]
        figures["ours_to_floor"] = statistics.median(ratios)
        figures["ours_to_floor_range"] = [min(ratios), max(ratios)]
    return figures


def measure_factory(
    factory: str, workdir: Path, seconds: float, template: Path, store: str = "server"
) -> dict:
    """Everything measured for one factory of ``template`` on ``store`` (a Redis topology
    or a database; "server" for the cookie factories)."""
    answers = {"session_factory": factory, "project_slug": SLUG, **RENDER_ANSWERS.get(store, {})}
    project = render(workdir / f"{factory}-{store}", template, **answers)
    python = install(project)
    stock = store not in NO_STOCK
    if stock and STOCK_REQUIREMENTS.get(factory):
        pip = [str(python), "-m", "pip", "install", "--quiet", *STOCK_REQUIREMENTS[factory]]
        subprocess.run(pip, check=True)
    with session_store(factory, store) as servers:
        for pid in servers.pids:
            pin_server(pid, CLIENT_CORES)
        env = production_env(project, factory, servers.environment)
        inside = in_process(project, env, seconds, factory if stock else "")
        outside = served(project, env, seconds, inside, factory if stock else "")
    return {
        "factory": factory,
        "store": store,
        "set_cookie_bytes": inside["set_cookie_bytes"],
        "in_process": summary(inside["rounds"]),
        "served": summary(outside),
        "rounds": {"in_process": inside["rounds"], "served": outside},
    }


def cases(factories: list[str], stores: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(factory, store) pairs to measure: a server-side factory once per store it is given
    (Redis topologies, databases), a cookie factory once."""
    return [(factory, store) for factory in factories for store in stores.get(factory, ["server"])]


def template_factories(template: Path) -> tuple[str, ...]:
    """The session factories ``template`` offers: an older commit lacks the newer ones."""
    answers = json.loads((template / "cookiecutter.json").read_text())
    return tuple(answers["session_factory"])


def render_seconds(workdir: Path, template: Path, rounds: int = 5) -> float:
    """Median wall time of rendering the template with the default answers."""
    times = []
    for number in range(rounds):
        started = time.perf_counter()
        render(workdir / f"render{number}", template)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def suite_seconds() -> float:
    """Wall time of the template's whole test suite."""
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "tasks.py"), "test"], cwd=ROOT, check=True)
    return time.perf_counter() - started


def machine() -> dict:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "app_cores": sorted(APP_CORES),
        "client_cores": sorted(CLIENT_CORES),
        # Anything else running shares the cores: a run is worth as much as its quiet.
        "load_at_start": os.getloadavg(),
    }


def ceiling_share(rates: dict[str, float]) -> float:
    """The counter page's rate as a share of the one-round-trip (ping) page's."""
    return rates["counter_ratio"] / rates["ping_ratio"]


def floor_range(rates: dict) -> str:
    """The range of the rounds' ours ÷ floor ratios, as the report shows it."""
    low, high = rates["ours_to_floor_range"]
    return f"{low:.2f}-{high:.2f}"


def report(results: dict) -> str:
    """The results as Markdown tables."""
    host = results["machine"]
    lines = [
        f"Machine: {host['cpu']}, {host['cores']} cores, Python {host['python']}; "
        f"the app on cores {host['app_cores']}, wrk and the stores' servers on cores "
        f"{host['client_cores']}; load average at the start "
        f"{' / '.join(f'{load:.2f}' for load in host['load_at_start'])} (1 / 5 / 15 min)",
        "",
        "| factory | mode | limit req/s | counter req/s | counter ratio (rounds' range) "
        "| flash rounds/s | flash ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for factory, figures in results["factories"].items():
        for mode in ("in_process", "served"):
            rates = figures[mode]
            low, high = rates["counter_ratio_range"]
            lines.append(
                f"| {factory} | {mode.replace('_', '-')} | {rates['limit']:.0f} "
                f"| {rates['counter']:.0f} | **{rates['counter_ratio']:.2f}** "
                f"({low:.2f} to {high:.2f}) "
                f"| {rates['flash_round']:.0f} | {rates['flash_round_ratio']:.2f} |"
            )
    lines += [
        "",
        "| store | one round trip and no session work (ping: Redis EXISTS, SQL SELECT 1), "
        "in-process / served "
        "| counter page as a share of it, in-process / served |",
        "|---|---|---|",
    ]
    lines += [
        f"| {factory} | {figures['in_process']['ping_ratio']:.2f} / "
        f"{figures['served']['ping_ratio']:.2f} "
        f"| {ceiling_share(figures['in_process']):.0%} / {ceiling_share(figures['served']):.0%} |"
        for factory, figures in results["factories"].items()
        if "ping_ratio" in figures["served"]
    ]
    lines += [
        "",
        "| factory | stock library | counter ratio, ours | counter ratio, stock | ours ÷ stock |",
        "|---|---|---|---|---|",
    ]
    for factory, figures in results["factories"].items():
        rates = figures["in_process"]
        if "stock" not in rates:
            continue
        lines.append(
            f"| {factory} | {STOCK_PACKAGES[figures['factory']]} | {rates['counter_ratio']:.2f} "
            f"| {rates['stock_ratio']:.2f} | **{rates['counter'] / rates['stock']:.2f}** |"
        )
    floors = [
        f"| {factory} | {inside['counter_ratio']:.2f} / {served['counter_ratio']:.2f} "
        f"| {inside['floor_ratio']:.2f} / {served['floor_ratio']:.2f} "
        f"| **{inside['ours_to_floor']:.2f}** / **{served['ours_to_floor']:.2f}** "
        f"| {floor_range(inside)} / {floor_range(served)} |"
        for factory, figures in results["factories"].items()
        if "floor" in (inside := figures["in_process"])
        and "floor" in (served := figures["served"])
    ]
    if floors:  # a benchmark with floor pages
        lines += [
            "",
            "| factory | counter ratio, ours (in-process / served) | the floor's "
            "| ours ÷ floor (median of rounds) | rounds' range |",
            "|---|---|---|---|---|",
            *floors,
        ]
    signed_in = [
        f"| {factory} | {rates['counter_ratio']:.2f} | {rates['counter_signed_in_ratio']:.2f} "
        f"| {1000 / rates['sign_in']:.0f} |"
        for factory, figures in results["factories"].items()
        if "sign_in" in (rates := figures["in_process"])
    ]
    if signed_in:  # a template with a sign-in form
        lines += [
            "",
            "| factory | counter ratio, anonymous | signed in | a sign-in (form and POST), ms |",
            "|---|---|---|---|",
            *signed_in,
        ]
    lines += ["", "| factory | Set-Cookie bytes (counter + 3 flash messages) |", "|---|---|"]
    lines += [
        f"| {factory} | {figures['set_cookie_bytes']} |"
        for factory, figures in results["factories"].items()
    ]
    lines += ["", f"Render time (default answers): {results['render_seconds'] * 1000:.0f} ms"]
    if results["skipped"]:
        skipped = ", ".join(results["skipped"])
        lines.append(f"Not offered by this template, so not measured: {skipped}")
    if "suite_seconds" in results:
        lines.append(
            f"Template test suite (`python3 tasks.py test`): {results['suite_seconds']:.0f} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the report, and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement round")
    parser.add_argument("--factory", action="append", choices=FACTORIES)
    parser.add_argument("--suite", action="store_true", help="also time the test suite")
    parser.add_argument(
        "--redis-topology",
        action="append",
        choices=REDIS_TOPOLOGIES,
        help="Redis deployments to measure the Redis factory on (default: all)",
    )
    parser.add_argument(
        "--database",
        action="append",
        choices=DATABASES,
        help="databases to measure the SQL factory on (default: both)",
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=ROOT,
        help="measure another checkout of this template (an older commit, say)",
    )
    args = parser.parse_args(argv)
    stores = {
        "redis": args.redis_topology or list(REDIS_TOPOLOGIES),
        "database": args.database or list(DATABASES),
    }
    if not 0.2 <= args.seconds <= 60:
        parser.error("--seconds must be 0.2 to 60")
    offered = template_factories(args.template)
    factories = [factory for factory in args.factory or FACTORIES if factory in offered]
    skipped = sorted(set(args.factory or FACTORIES) - set(factories))
    if skipped:
        print(f"skipped, not in {args.template}: {', '.join(skipped)}", file=sys.stderr)
    results: dict = {"machine": machine(), "factories": {}, "skipped": skipped}
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        for factory, store in cases(factories, stores):
            results["factories"][case_name(factory, store)] = measure_factory(
                factory, Path(workdir), args.seconds, args.template, store
            )
        results["render_seconds"] = render_seconds(Path(workdir), args.template)
    if args.suite:
        results["suite_seconds"] = suite_seconds()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
