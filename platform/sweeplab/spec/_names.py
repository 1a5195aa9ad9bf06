"""The names a spec may use, as Literal types built from the rooms' catalogs.

pydantic lists a Literal's options in its errors, so an unknown name is rejected
with the valid ones, and a new entry in a catalog is valid here at once. (mypy
cannot read a Literal built at run time, so it sees plain strings.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sweeplab.data.catalog import DATASETS
from sweeplab.models.catalog import ACTIVATIONS, INITS, NORMS, NORMS_2D, VIEWS
from sweeplab.optim.catalog import LOSSES, OPTIMIZERS, SCHEDULES
from sweeplab.search.catalog import BACKENDS, PRUNERS, SAMPLERS, SCHEDULERS

if TYPE_CHECKING:
    from typing import TypeAlias

    ActivationName: TypeAlias = str
    NormName: TypeAlias = str
    Norm2dName: TypeAlias = str
    InitName: TypeAlias = str
    OptimizerName: TypeAlias = str
    LossName: TypeAlias = str
    DatasetName: TypeAlias = str
    SamplerName: TypeAlias = str
    PrunerName: TypeAlias = str
    SchedulerName: TypeAlias = str
    BackendName: TypeAlias = str
    ScheduleName: TypeAlias = str
    ViewName: TypeAlias = str
else:
    ActivationName = Literal[tuple(ACTIVATIONS)]
    NormName = Literal[tuple(NORMS)]
    Norm2dName = Literal[tuple(NORMS_2D)]
    InitName = Literal[tuple(INITS)]
    OptimizerName = Literal[tuple(OPTIMIZERS)]
    LossName = Literal[("auto", *LOSSES)]
    DatasetName = Literal[tuple(DATASETS)]
    SamplerName = Literal[tuple(SAMPLERS)]
    PrunerName = Literal[tuple(PRUNERS)]
    SchedulerName = Literal[tuple(SCHEDULERS)]
    BackendName = Literal[tuple(BACKENDS)]
    ScheduleName = Literal[tuple(SCHEDULES)]
    ViewName = Literal[("auto", *VIEWS)]
