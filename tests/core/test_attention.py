"""The kernels of falip.core.attention against the naive loops of support.naive (float64, head by head).

On a tiny open_clip tower (nn.MultiheadAttention blocks): the written-out per-head attention, the fast
path with query rows and shared keys, the [CLS]-row shortcut, whole blocks, the block whose patches
are shared by an image's regions, and the attention-pooling probe. Tolerance 1e-5 absolute (float32
kernels against float64 loops).
"""

from __future__ import annotations

import pytest
import torch

from falip.core.attention import (
    attention,
    block_forward,
    block_forward_shared_patches,
    cls_query_attention,
    head_attention,
    pool_attention,
    pool_head_attention,
)
from falip.towers import wrap
from support.naive import naive_attention, naive_block
from support.tiny import make_tiny_clip
from support.towers import TOWERS, build

TOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    model = make_tiny_clip(layers=2, heads=4)
    return model, wrap(model)


def _tokens(tower, n: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, tower.num_tokens, tower.width)


def _row0(bias_row: torch.Tensor, length: int) -> torch.Tensor:
    """A [L, L] bias that is ``bias_row`` [L] on the [CLS] query row, zero elsewhere."""
    full = torch.zeros(length, length, dtype=torch.float64)
    full[0] = bias_row.double()
    return full


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got.double(), want.double(), atol=TOL, rtol=0)


def test_head_attention_is_the_naive_attention(tiny):
    model, tower = tiny
    p, block = tower.parts(1), model.visual.transformer.resblocks[1]
    x = _tokens(tower, 2)
    bias = 3 * torch.randn(2, tower.num_tokens, tower.num_tokens)
    with torch.no_grad():
        h = p.norm1(x)
        got = head_attention(p, h, bias, per_token=True)
        rows = head_attention(p, h, bias, query_rows=slice(0, 1))
        plain = head_attention(p, h)
    for b in range(2):
        probs, per_head, output = naive_attention(block, h[b], bias[b])
        _close(got.probs[b], probs)
        _close(got.heads[b], per_head)
        _close(got.output[b], output)
        _close(rows.output[b], output[:1])
        _close(rows.probs[b], probs[:, :1])
    _close(got.tokens.sum(3), got.heads)  # each key token's term adds up to the head's output
    _close(got.heads.sum(1) + p.out_bias, got.output)
    assert (got.output - plain.output).abs().max() > 1e-2  # the bias acts: the check can fail


def test_fast_attention_with_rows_and_shared_keys(tiny):
    model, tower = tiny
    p, block = tower.parts(0), model.visual.transformer.resblocks[0]
    x = _tokens(tower, 2, seed=1)
    kv_index = torch.tensor([0, 0, 1])  # three regions, two of image 0
    bias = 3 * torch.randn(3, 1, tower.num_tokens, tower.num_tokens)
    with torch.no_grad():
        h = p.norm1(x)
        full = attention(p, h[kv_index], bias)
        shared = attention(p, h, bias, kv_index=kv_index)
        patches = attention(p, h, bias[:, :, 1:], query_rows=slice(1, None), kv_index=kv_index)  # bias of those rows
    for r, i in enumerate(kv_index.tolist()):
        want = naive_attention(block, h[i], bias[r, 0])[2]
        _close(full[r], want)
        _close(shared[r], want)
        _close(patches[r], want[1:])


def test_cls_query_attention_forms_no_keys_yet_is_row_zero(tiny):
    model, tower = tiny
    p, block = tower.parts(1), model.visual.transformer.resblocks[1]
    assert p.keys_linear  # the shortcut, not the general path, is under test
    x = _tokens(tower, 3, seed=2)
    bias = 3 * torch.randn(3, 1, 1, tower.num_tokens)
    with torch.no_grad():
        h = p.norm1(x)
        got = cls_query_attention(p, h, bias)
        unbiased = cls_query_attention(p, h)
    assert got.shape == (3, 1, tower.width)
    for b in range(3):
        _close(got[b], naive_attention(block, h[b], _row0(bias[b, 0, 0], tower.num_tokens))[2][:1])
        _close(unbiased[b], naive_attention(block, h[b])[2][:1])


@pytest.mark.parametrize("name", ["open_clip-qknorm-headscale-attnnorm", "open_clip-innernorm-fcnorm"])
def test_cls_query_attention_general_path_is_row_zero(name):
    tower = wrap(build(name))
    p = tower.parts(0)
    x = _tokens(tower, 2, seed=3)
    bias = 3 * torch.randn(2, 1, 1, tower.num_tokens)
    with torch.no_grad():
        h = p.norm1(x)
        full_bias = torch.zeros(2, 1, tower.num_tokens, tower.num_tokens)
        full_bias[:, :, 0] = bias[:, :, 0]
        _close(cls_query_attention(p, h, bias), attention(p, h, full_bias)[:, :1])


def test_block_forward_is_the_naive_block(tiny):
    model, tower = tiny
    x = _tokens(tower, 2, seed=4)
    bias = 3 * torch.randn(2, 1, tower.num_tokens, tower.num_tokens)
    cls_bias = bias[:, :, :1]
    with torch.no_grad():
        for i, block in enumerate(model.visual.transformer.resblocks):
            p = tower.parts(i)
            full = block_forward(p, x, bias)
            cls_only = block_forward(p, x, cls_bias, query_rows=slice(0, 1))  # the [CLS] shortcut inside
            for b in range(2):
                _close(full[b], naive_block(block, x[b], bias[b, 0]))
                _close(cls_only[b], naive_block(block, x[b], _row0(cls_bias[b, 0, 0], tower.num_tokens))[:1])


def test_shared_patches_block_is_a_block_per_region(tiny):
    model, tower = tiny
    p, block = tower.parts(1), model.visual.transformer.resblocks[1]
    n_p = tower.num_tokens - 1
    torch.manual_seed(5)
    patches = torch.randn(3, n_p, tower.width)
    counts = [2, 0, 2]  # image 1 has no region
    kv_index = torch.tensor([0, 0, 2, 2])
    cls = torch.randn(4, 1, tower.width)
    cls_bias = 3 * torch.randn(4, 1, 1, 1 + n_p)
    with torch.no_grad():
        got = block_forward_shared_patches(p, cls, patches, kv_index, counts, cls_bias)
        no_bias = block_forward_shared_patches(p, cls, patches, kv_index, counts)
    assert got.shape == (4, 1 + n_p, tower.width)
    for r, i in enumerate(kv_index.tolist()):
        tokens = torch.cat([cls[r], patches[i]])
        _close(got[r], naive_block(block, tokens, _row0(cls_bias[r, 0, 0], 1 + n_p)))
        _close(no_bias[r], naive_block(block, tokens))


@pytest.mark.parametrize("name", [n for n in TOWERS if n.startswith("open_clip")])
def test_shared_patches_block_on_every_open_clip_tower(name):
    """Towers the shortcut cannot take (q/k norm, inner norm) fall back; all equal a block per region."""
    tower = wrap(build(name))
    p = tower.parts(2)
    n_p = tower.num_tokens - 1
    torch.manual_seed(6)
    patches, cls = torch.randn(2, n_p, tower.width), torch.randn(3, 1, tower.width)
    kv_index, cls_bias = torch.tensor([0, 1, 1]), 3 * torch.randn(3, 1, 1, 1 + n_p)
    with torch.no_grad():
        got = block_forward_shared_patches(p, cls, patches, kv_index, [1, 2], cls_bias)
        x = torch.cat([cls, patches[kv_index]], dim=1)
        bias = torch.zeros(3, 1, 1 + n_p, 1 + n_p)
        bias[:, :, :1] = cls_bias
        _close(got, block_forward(p, x, bias))


def test_pool_attention_is_the_probe_with_a_key_bias():
    tower = wrap(build("map-prefix1"))
    pp = tower.pool_parts()
    torch.manual_seed(7)
    tokens = torch.randn(2, tower.num_tokens, tower.width)
    kv_index = torch.tensor([1, 0, 1])
    key_bias = 3 * torch.randn(3, tower.num_tokens)
    probes = pp.probe.shape[0]
    with torch.no_grad():
        got = pool_attention(pp, tokens, key_bias, kv_index)
        own = tower.run_pool(tokens[kv_index], key_bias[:, None, :].expand(-1, probes, -1))
        probs, feats = pool_head_attention(pp, tokens[kv_index], key_bias)
        plain = pool_attention(pp, tokens)
    _close(got, own)
    _close(feats, own)
    _close(probs.sum(-1), torch.ones(3, pp.heads, probes))
    _close(plain, tower.run_pool(tokens))
    assert (got - plain[kv_index]).abs().max() > 1e-3
