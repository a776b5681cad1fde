"""Rounds of `ab` against a server, and against several side by side with their rounds
interleaved, so that a noisy neighbour weighs on each alike; the median round of each is kept."""

from __future__ import annotations

from pathlib import Path

from bench.loadgen import run_ab
from tools.server import Server, cpu_between, tree_cpu_seconds

CONCURRENCIES = (1, 4, 16)


def requests_for(concurrency: int, quick: bool) -> int:
    base = {1: 200, 4: 400, 16: 800}[concurrency]
    return max(concurrency * 4, base // 10 if quick else base)


ROUNDS = 3  # at each concurrency; the median round is kept


def measured(server: Server, body: tuple[Path, str], requests: int, concurrency: int) -> dict:
    """One ab run, with the CPU the whole server (every process under it) used per request."""
    path, content_type = body
    before = tree_cpu_seconds(server.process.pid)
    result = run_ab(server.url + "/api/v1/classify", path, content_type, requests, concurrency)
    cpu = cpu_between(before, tree_cpu_seconds(server.process.pid))
    if result["failed"]:
        raise RuntimeError(f"{result['failed']} of {requests} requests failed: {server.log}")
    return {**result, "cpu_ms_per_request": round(cpu / requests * 1000, 3)}


def median(rounds: list[dict]) -> dict:
    """The median round, by throughput."""
    return sorted(rounds, key=lambda r: r["throughput_rps"])[len(rounds) // 2]


def median_round(server: Server, body: tuple[Path, str], requests: int, concurrency: int) -> dict:
    """The median, by throughput, of ROUNDS rounds."""
    return median([measured(server, body, requests, concurrency) for _ in range(ROUNDS)])


def report(kind: str, row: dict) -> None:
    print(
        f"{kind:8} {row['model']:8} {row['image']:5} c={row['concurrency']:<2} "
        f"{row['throughput_rps']:7.1f} req/s  mean {row['mean_ms']:.1f} ms  "
        f"p50 {row['p50_ms']:.0f} ms  cpu {row['cpu_ms_per_request']:.2f} ms/request"
    )


def sweep(server: Server, body: tuple[Path, str], quick: bool, row: dict, kind: str) -> list[dict]:
    """One image and model at every concurrency, after a short warm-up: a result row each, the
    median of ROUNDS rounds by throughput."""
    run_ab(server.url + "/api/v1/classify", *body, 20, 2)  # warm
    rows = []
    for concurrency in CONCURRENCIES:
        result = median_round(server, body, requests_for(concurrency, quick), concurrency)
        rows.append({**row, **result})
        report(kind, rows[-1])
    return rows


def side_by_side(
    servers: dict[str, Server], bodies: dict[str, tuple[Path, str]], quick: bool, row: dict
) -> dict[str, list[dict]]:
    """The same image on each server at every concurrency, their rounds interleaved (service,
    peer, service, ...) so that a noisy neighbour weighs on both alike: each one's median."""
    for name, server in servers.items():
        run_ab(server.url + "/api/v1/classify", *bodies[name], 20, 2)  # warm
    rows: dict[str, list[dict]] = {name: [] for name in servers}
    for concurrency in CONCURRENCIES:
        requests = requests_for(concurrency, quick)
        rounds: dict[str, list[dict]] = {name: [] for name in servers}
        for _ in range(ROUNDS):
            for name, server in servers.items():
                rounds[name].append(measured(server, bodies[name], requests, concurrency))
        for name, results in rounds.items():
            rows[name].append({**row, **median(results)})
            report(name, rows[name][-1])
    return rows
