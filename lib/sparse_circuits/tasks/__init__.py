"""Binary next-token tasks (docs/method.md, Tasks): a prompt, a correct next token and an incorrect one.

Every task, built in or user-defined, is a declarative ``TaskSpec``: a template with slots, word lists for
the slots, a rule for the correct (and incorrect) token, and a loss ("full": cross-entropy over the whole
vocabulary; "binary": cross-entropy over just the two candidates). Values of the ``split_slots`` (the
templates: actions, situations, sentences) are divided into train / val / test, shared by every task of a
family, so a circuit pruned on one split is judged on prompts it never saw.

    task = get_task("ioi")                  # opposite-gender IOI, the pruning set
    data = task.data("test", tokenizer)     # fixed, seeded evaluation prompts as padded tensors
    evaluate(model, data, task.loss)        # accuracy, p_correct, loss

``spec`` declares a task and checks it, ``prompts`` builds its splits and prompt tensors, ``metrics`` scores a
model on them, ``builtin`` holds the registry. A new built-in task is one more entry of ``builtin.BUILTIN_TASKS``.
"""

from .builtin import ALIASES, BUILTIN_TASKS, get_task, register_task, task_names
from .metrics import (
    answer_logits,
    binary_p_correct,
    evaluate,
    filter_prompts,
    metrics_from_logits,
    per_example_loss,
    run_answer_logits,
    task_answer_logits,
    verbatim_in_corpus,
)
from .prompts import SPLIT_FRACTIONS, SPLITS, Task, TaskData, encode_prompts
from .spec import LOSSES, TaskSpec, TaskSpecError

__all__ = [
    "ALIASES",
    "BUILTIN_TASKS",
    "LOSSES",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "Task",
    "TaskData",
    "TaskSpec",
    "TaskSpecError",
    "answer_logits",
    "binary_p_correct",
    "encode_prompts",
    "evaluate",
    "filter_prompts",
    "get_task",
    "metrics_from_logits",
    "per_example_loss",
    "register_task",
    "run_answer_logits",
    "task_answer_logits",
    "task_names",
    "verbatim_in_corpus",
]
