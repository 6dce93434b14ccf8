"""Token batches and their log-probabilities: the tensor helpers that sampling, teacher forcing and fine-tuning share.

Imported only when a model runs (this module imports torch).
"""

from __future__ import annotations

import torch


def chosen_logprobs(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(scores) at the chosen tokens: scores (k, T, V), tokens (k, T) -> (k, T)."""
    logp = torch.log_softmax(scores.float(), dim=-1)
    picked = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return torch.nan_to_num(picked, neginf=0.0)  # padding after the end may sit on a filtered token


def pad_batch(rows: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids (B, L) and labels (B, L): -100 on the prompt and the padding."""
    width = max(len(ids) for ids, _ in rows)
    batch = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, prompt_len) in enumerate(rows):
        batch[i, : len(ids)] = torch.tensor(ids)
        labels[i, prompt_len: len(ids)] = torch.tensor(ids[prompt_len:])
    return batch, labels


def prompt_mask(rows: list[tuple[list[int], int]], batch: torch.Tensor) -> torch.Tensor:
    """True on each row's prompt tokens (B, L): with the labels' mask, the attention mask of real tokens."""
    mask = torch.zeros_like(batch, dtype=torch.bool)
    for i, (_, prompt_len) in enumerate(rows):
        mask[i, :prompt_len] = True
    return mask
