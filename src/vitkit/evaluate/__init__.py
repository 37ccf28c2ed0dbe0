"""Evaluation: classification metrics, checkpoint evaluation, few-shot linear evaluation."""
from .classification import EvalResult, evaluate, evaluate_checkpoint, model_from_checkpoint
from .fewshot import FewShotResult, extract_features, fewshot_evaluate, linear_probe
from .metrics import ConfusionMatrix, accuracy, plot_confusion_matrix, topk_correct

__all__ = ["ConfusionMatrix", "EvalResult", "FewShotResult", "accuracy", "evaluate", "evaluate_checkpoint",
           "extract_features", "fewshot_evaluate", "linear_probe", "model_from_checkpoint",
           "plot_confusion_matrix", "topk_correct"]
