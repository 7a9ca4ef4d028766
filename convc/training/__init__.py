"""Training: a compiled step running forward, backward and the optimizer update in one call.

`train_step(model, loss=nn.CrossEntropyLoss(), optimizer=convc.optim.SGD(...),
inputs=convc.Input("x", ...))` builds the step graph (`graph.py`) and its engine
(`step.py`); the optimizers and their formulas live in `convc.optim`.
"""

from .graph import masked_dropout, rebuild, running_statistics, step_graph
from .step import Predictor, TrainStep, train_step

__all__ = [
    "Predictor",
    "TrainStep",
    "masked_dropout",
    "rebuild",
    "running_statistics",
    "step_graph",
    "train_step",
]
