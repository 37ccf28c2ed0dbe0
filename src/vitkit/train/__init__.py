"""Training: recipes (typed configs), the loop, optimiser groups, EMA, checkpoints, distributed."""
from .config import TrainConfig, apply_overrides
from .loop import NonFiniteLossError, RunResult, Trainer, TrainingError, build_model, load_run_config, train
from .recipes import RECIPES, describe_recipe, get_recipe, recipe_class
from .tasks import ClassificationTask, Task

__all__ = [
    "RECIPES", "ClassificationTask", "NonFiniteLossError", "RunResult", "Task", "TrainConfig", "Trainer",
    "TrainingError", "apply_overrides", "build_model", "describe_recipe", "get_recipe", "load_run_config",
    "recipe_class", "train",
]
