"""Evaluation: classification metrics, checkpoint evaluation, few-shot linear evaluation, VTAB-1k runs."""
from .classification import EvalResult, evaluate, evaluate_checkpoint, model_from_checkpoint
from .fewshot import FewShotResult, extract_features, fewshot_evaluate, linear_probe
from .metrics import ConfusionMatrix, accuracy, plot_confusion_matrix, topk_correct
from .vtab import VTAB_GROUPS, run_vtab

__all__ = ["ConfusionMatrix", "EvalResult", "FewShotResult", "accuracy", "evaluate", "evaluate_checkpoint",
           "extract_features", "fewshot_evaluate", "linear_probe", "model_from_checkpoint",
           "plot_confusion_matrix", "run_vtab", "topk_correct", "VTAB_GROUPS"]
