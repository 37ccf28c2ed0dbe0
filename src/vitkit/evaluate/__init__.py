"""Evaluation: classification metrics and checkpoint evaluation."""
from .classification import EvalResult, evaluate, evaluate_checkpoint, model_from_checkpoint
from .metrics import ConfusionMatrix, accuracy, plot_confusion_matrix, topk_correct

__all__ = ["ConfusionMatrix", "EvalResult", "accuracy", "evaluate", "evaluate_checkpoint",
           "model_from_checkpoint", "plot_confusion_matrix", "topk_correct"]
