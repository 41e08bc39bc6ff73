"""Scoring a model on task prompts: logits at the answer position, the task loss (full or binary), accuracy
and probabilities, the filter of prompts the model knows, and a check that test prompts are not memorized."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.generator import generate_stories
from .prompts import Task, TaskData
from .spec import LOSSES


def answer_logits(logits: torch.Tensor, data: TaskData) -> torch.Tensor:
    """[N, T, V] -> [N, V] at each prompt's answer position ([N, 1, V] from ``model(tokens, at=last)`` too)."""
    if logits.shape[1] == 1:
        return logits[:, 0]
    return logits[torch.arange(logits.shape[0], device=logits.device), data.last.to(logits.device)]


def run_answer_logits(model, data: TaskData) -> torch.Tensor:
    """[N, V] logits at the answer positions, computing the unembedding only there."""
    return model(data.tokens, at=data.last)[:, 0]


def per_example_loss(ans_logits: torch.Tensor, data: TaskData, loss: str) -> torch.Tensor:
    """[N] cross-entropy of the correct token, over the vocabulary ("full") or the two candidates ("binary")."""
    c, i = data.correct.to(ans_logits.device), data.incorrect.to(ans_logits.device)
    logits = ans_logits.float()
    if loss == "full":
        return F.cross_entropy(logits, c, reduction="none")
    if loss == "binary":
        pair = torch.stack([logits.gather(1, c[:, None])[:, 0], logits.gather(1, i[:, None])[:, 0]], dim=1)
        return F.cross_entropy(pair, torch.zeros_like(c), reduction="none")
    raise ValueError(f"unknown loss {loss!r}; allowed: {list(LOSSES)}")


def binary_p_correct(ans_logits: torch.Tensor, data: TaskData) -> torch.Tensor:
    """[N] p_c / (p_c + p_i) from the full softmax (the same as softmaxing the two logits)."""
    c, i = data.correct.to(ans_logits.device), data.incorrect.to(ans_logits.device)
    lc, li = ans_logits.float().gather(1, c[:, None])[:, 0], ans_logits.float().gather(1, i[:, None])[:, 0]
    return torch.sigmoid(lc - li)


@torch.no_grad()
def task_answer_logits(model, data: TaskData, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(data), batch_size):
        part = data.index(range(s, min(len(data), s + batch_size))).to(device)
        out.append(run_answer_logits(model, part).float().cpu())
    return torch.cat(out)


def metrics_from_logits(ans_logits: torch.Tensor, data: TaskData, loss: str) -> dict:
    p = binary_p_correct(ans_logits, data)
    full_p = ans_logits.float().softmax(-1).gather(1, data.correct.to(ans_logits.device)[:, None])[:, 0]
    return {
        "n": len(data),
        "accuracy": float((p > 0.5).float().mean()),
        "p_correct": float(p.mean()),
        "loss": float(per_example_loss(ans_logits, data, loss).mean()),
        "top1_accuracy": float((ans_logits.argmax(-1) == data.correct.to(ans_logits.device)).float().mean()),
        "p_correct_full": float(full_p.mean()),
    }


def evaluate(model, data: TaskData, loss: str) -> dict:
    """accuracy (correct beats incorrect), p_correct (mean binary probability), loss (the task's), and the
    full-vocabulary top-1 accuracy and probability of the correct token."""
    return metrics_from_logits(task_answer_logits(model, data), data, loss)


@torch.no_grad()
def filter_prompts(model, data: TaskData, min_p_full: float = 0.3, min_p_binary: float = 0.8) -> tuple[TaskData, float]:
    """Keep prompts where the model gives the correct token p > min_p_full (full softmax) and, between the two
    candidates, p > min_p_binary (docs/method.md, Tasks). Returns the kept data and the kept fraction."""
    logits = task_answer_logits(model, data)
    full_p = logits.softmax(-1).gather(1, data.correct[:, None])[:, 0]
    keep = (full_p > min_p_full) & (binary_p_correct(logits, data) > min_p_binary)
    idx = keep.nonzero().flatten()
    return data.index(idx), float(keep.float().mean())


def _with_answer(prompt: str, answer: str) -> str:
    return prompt + answer if answer and not answer[0].isalnum() else f"{prompt} {answer}"


def verbatim_in_corpus(
    task: Task, split: str = "test", n_stories: int = 5000, seed: int = 0, variant: str = "basic"
) -> dict:
    """How many of a split's prompts (with their correct answer) occur verbatim in the training corpus.

    The answer is joined the way the corpus writes it: a word after a space, punctuation ("?", ".") directly.
    """
    text = "\n".join(generate_stories(seed, n_stories, variant=variant))
    assigns = task.assignments(split)
    prompts = [_with_answer(task.prompt_text(a), task.spec.correct_of(a)) for a in assigns]
    hits = sum(p in text for p in prompts)
    return {
        "task": task.name,
        "split": split,
        "variant": variant,
        "n_prompts": len(prompts),
        "n_stories": n_stories,
        "verbatim": hits,
        "fraction": hits / len(prompts),
    }
