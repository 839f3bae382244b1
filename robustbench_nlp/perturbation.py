"""Embedding-space perturbations δ shared by the adversarial defenses (PEAFT, FreeLB).

Notation: B examples, L token positions, d embedding size, M the attention mask [B, L]
(1 for real tokens), q = Σ M per example (real tokens).
"""

from __future__ import annotations

import torch


def init_delta_l2(mask: torch.Tensor, dim: int, init_mag: float,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """δ0 = U(-1, 1) · M · init_mag / √(q·d)  (PEAFT paper §3; FreeLB ``norm_type='l2'``).

    Args:
        mask: attention mask M [B, L].
        dim: embedding size d.
        init_mag: ε_init, absolute embedding units; 0 gives δ0 = 0.

    Returns:
        δ0 [B, L, d], zero on padding positions.
    """
    m = mask.to(dtype).unsqueeze(-1)
    if init_mag <= 0:
        return torch.zeros(*mask.shape, dim, dtype=dtype, device=mask.device)
    u = torch.empty(*mask.shape, dim, dtype=dtype, device=mask.device).uniform_(-1, 1)
    q = mask.to(dtype).sum(1).clamp_min(1.0).view(-1, 1, 1)
    return u * m * (init_mag / torch.sqrt(q * dim))


def init_delta_linf(mask: torch.Tensor, dim: int, init_mag: float,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """δ0 = U(-init_mag, init_mag) · M  (FreeLB ``norm_type='linf'``). Shape [B, L, d]."""
    m = mask.to(dtype).unsqueeze(-1)
    if init_mag <= 0:
        return torch.zeros(*mask.shape, dim, dtype=dtype, device=mask.device)
    return torch.empty(*mask.shape, dim, dtype=dtype, device=mask.device).uniform_(
        -init_mag, init_mag) * m


def embedding_rms(word_embeddings: torch.nn.Embedding) -> float:
    """Root-mean-square coordinate of the word-embedding table, mean‖E_i‖₂ / √d.

    PEAFT's ε and α are given in this unit so that one default suits backbones whose
    embeddings have different scales (all-MiniLM-L6-v2: ‖E(x)‖₂ ≈ 1.07 per token, d = 384).
    """
    w = word_embeddings.weight.detach().float()
    return float(w.norm(dim=-1).mean() / w.shape[-1] ** 0.5)


def delta_ratio(delta: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over real tokens of ‖δ_t‖₂ / ‖E(x_t)‖₂ (dimensionless).

    Args:
        delta: [B, L, d]; embeds: E(x) [B, L, d]; mask: [B, L].
    """
    m = mask.bool()
    num = delta.detach().float().norm(dim=-1)[m]
    den = embeds.detach().float().norm(dim=-1)[m].clamp_min(1e-12)
    return float((num / den).mean()) if num.numel() else 0.0
