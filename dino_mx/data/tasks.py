"""MedMNIST's task types, by the names ``medmnist.INFO[flag]["task"]`` gives them.

The dataset records its task (:class:`~dino_mx.data.NpzImageDataset`) and evaluation picks its
metrics by it (:mod:`dino_mx.eval.metrics`): ordinal grades are scored as classes, as MedMNIST's
own evaluator does, and multi-label targets label by label.
"""

BINARY = "binary-class"
MULTICLASS = "multi-class"
ORDINAL = "ordinal-regression"
MULTILABEL = "multi-label, binary-class"
TASKS = (BINARY, MULTICLASS, ORDINAL, MULTILABEL)


def check_task(task: str) -> str:
    """Return ``task`` if it is one of :data:`TASKS`, else raise ValueError naming them."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(map(repr, TASKS))}")
    return task
