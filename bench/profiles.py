"""Sizes, sample counts and durations of the two runs: ``full`` (make bench) and ``quick`` (make bench-quick)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    budget_s: float  # wall-clock bound of the whole run, data generation of a cold run excepted
    # Data
    log_jobs: int
    log_lines: int
    list_sizes: tuple[int, int]  # jobs in the small and the large space (P5)
    months_back: int  # the first dataset month is this many months before the month of generation
    months: int
    # Measurement
    rounds: int  # service and baseline alternate this many times (order flips every round)
    warmup: int  # requests per side before timing
    p1_round_s: float  # per side and round
    p2_samples: tuple[int, int]  # per side, at 1 and at 16 clients
    p3_samples: tuple[int, int]
    distinct_queries: int  # distinct read requests captured (cycled through by the samples)
    max_round_s: float  # a latency round stops early after this long (per side)
    p4_round_s: float  # per side, endpoint and round
    p5_samples: int  # per space
    p6_duration_s: float
    p7_streams_per_job: int  # over 100 jobs; compared with 1 per job
    p7_phase_s: float  # writing per phase (1 stream per job, then p7_streams_per_job)
    space_queries: int  # distinct space searches captured
    space_samples: int  # per side, at 1 client
    export_jobs: int  # the largest jobs, each exported per side and round


FULL = Profile(
    name="full",
    budget_s=600.0,
    log_jobs=2000,
    log_lines=5_000_000,
    list_sizes=(10_000, 1_000_000),
    months_back=1,
    months=3,
    rounds=4,
    warmup=200,
    p1_round_s=8.0,
    p2_samples=(2000, 2000),
    p3_samples=(1200, 1500),
    distinct_queries=300,
    max_round_s=15.0,
    p4_round_s=4.0,
    p5_samples=2000,
    p6_duration_s=20.0,
    p7_streams_per_job=10,
    p7_phase_s=10.0,
    space_queries=50,
    space_samples=300,
    export_jobs=3,
)

QUICK = Profile(
    name="quick",
    budget_s=80.0,  # leaves room for make and the stack check inside two minutes
    log_jobs=200,
    log_lines=100_000,
    list_sizes=(1_000, 20_000),
    months_back=25,
    months=2,
    rounds=2,
    warmup=30,
    p1_round_s=1.2,
    p2_samples=(150, 400),
    p3_samples=(100, 200),
    distinct_queries=50,
    max_round_s=3.0,
    p4_round_s=1.0,
    p5_samples=150,
    p6_duration_s=3.0,
    p7_streams_per_job=10,  # 1,000 streams as in full; only the phases are shorter
    p7_phase_s=4.0,
    space_queries=20,
    space_samples=60,
    export_jobs=2,
)

PROFILES = {profile.name: profile for profile in (FULL, QUICK)}
