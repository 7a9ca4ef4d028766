"""Lowering: fused groups of tensor expressions + schedules -> a loop-IR Program.

`assemble(graph, groups)` is the entry point (see `program`);
`lower_group` lowers one group to one kernel, `default_schedule` picks each
op family's schedule, `lower_nest` applies a schedule to one expression.
"""

from .group import LoweredGroup, lower_group
from .nest import lower_nest
from .program import assemble, plan_arena
from .schedule import default_schedule

__all__ = [
    "LoweredGroup",
    "assemble",
    "default_schedule",
    "lower_group",
    "lower_nest",
    "plan_arena",
]
