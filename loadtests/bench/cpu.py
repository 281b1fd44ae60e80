"""CPU per program over a bench's measured seconds: the server, Redis, PostgreSQL, the load generator (the bench's
process and its viewer processes) and the rest of the machine (others: on a shared box, the noise)."""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.bench import purchase_bench
from loadtests.support.server import ServerProcess

PROGRAMS = ("server", "redis", "postgres", "client", "others")
COLUMNS = ("server CPU %", "Redis CPU %", "PostgreSQL CPU %", "client CPU %", "others CPU %")  # a table's, in order


@dataclass
class Meter:
    """The CPU seconds every program had used when the measured seconds began."""

    server: ServerProcess
    client_pids: list[int]
    before: dict[int, float]
    machine_before: float

    @classmethod
    def start(cls, server: ServerProcess, client_pids: list[int]) -> Meter:
        tree = server.tree()
        before = purchase_bench.cpu_seconds(tree.web + tree.redis + tree.postgres + client_pids)
        return cls(server, client_pids, before, purchase_bench.machine_busy_seconds())

    def percent(self, elapsed: float) -> dict[str, int]:
        """Each program's CPU since `start`, in % of a core over `elapsed` seconds: {"<program>_cpu_percent": %}."""
        tree = self.server.tree()
        after = purchase_bench.cpu_seconds(tree.web + tree.redis + tree.postgres + self.client_pids)
        machine = purchase_bench.machine_busy_seconds() - self.machine_before
        cpu = {pid: used - self.before.get(pid, 0.0) for pid, used in after.items()}
        programs = {
            "server": sum(cpu.get(pid, 0.0) for pid in tree.web),
            "redis": sum(cpu.get(pid, 0.0) for pid in tree.redis),
            "postgres": sum(cpu.get(pid, 0.0) for pid in tree.postgres),
            "client": sum(cpu.get(pid, 0.0) for pid in self.client_pids),
        }
        programs["others"] = machine - sum(programs.values())
        return {f"{program}_cpu_percent": round(100 * used / elapsed) for program, used in programs.items()}
