"""Tests for gradts_engine.heads: adapters, head gates and per-example importance (DESIGN.md §2).

Every reference here is independent of the code under test: finite differences, one-example
autograd on parameters, and a direct re-implementation of the original GradTS code. Models are
tiny and built from configs (offline).
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: E402

from gradts_engine import heads  # noqa: E402
from gradts_engine.errors import ModelError, UnsupportedArchitectureError  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread; restore the setting for other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


V = 100  # vocabulary
_COMMON = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=V
)
_DECODER = dict(num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
_TINY: dict[str, dict] = {
    "bert": _COMMON,
    "roberta": dict(_COMMON, pad_token_id=1),
    "xlm-roberta": dict(_COMMON, pad_token_id=1),
    "electra": dict(_COMMON, embedding_size=32),
    "deberta-v2": dict(
        _COMMON,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=8,
        share_att_key=True,  # as DeBERTa-v3: W_Q, W_K also project the relative positions
        max_relative_positions=16,
    ),
    "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=V),
    "albert": dict(_COMMON, embedding_size=16, num_hidden_layers=3),
    "modernbert": dict(
        _COMMON,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        global_attn_every_n_layers=1,
    ),
    "gpt2": dict(
        n_embd=32, n_layer=2, n_head=4, vocab_size=V, pad_token_id=0, bos_token_id=1, eos_token_id=2
    ),
    "llama": dict(_COMMON, **_DECODER),
    "qwen2": dict(_COMMON, **_DECODER),
    "mistral": dict(_COMMON, **_DECODER),
}


def tiny_model(model_type: str, num_labels: int = 3, seed: int = 0, **overrides):
    cfg = AutoConfig.for_model(
        model_type, num_labels=num_labels, **{**_TINY[model_type], **overrides}
    )
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(cfg)


def ce(out, batch):
    return F.cross_entropy(out.logits, batch["labels"], reduction="none")


def make_batch(lengths=(7, 5, 3), T=None, seed=1, num_labels=3, pad=0):
    """Right-padded batch with attention masks; ids avoid the special ids 0-3."""
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    B = len(lengths)
    ids = torch.full((B, T), pad, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(4, V, (n,), generator=g)
        mask[b, :n] = 1
    labels = torch.randint(0, num_labels, (B,), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pad_id(model):
    return model.config.pad_token_id or 0


# ------------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("model_type", heads.SUPPORTED_MODEL_TYPES)
def test_every_family_gates(model_type):
    model = tiny_model(model_type).eval()
    layout = heads.head_layout(model)
    cfg = model.config
    assert layout.model_type == model_type
    assert layout.num_layers == cfg.num_hidden_layers
    assert layout.num_heads == cfg.num_attention_heads
    assert layout.num_heads * layout.head_dim == 32
    assert len(layout.projections) == layout.num_layers
    batch = make_batch(pad=pad_id(model))
    with heads.HeadGates(model) as gates:
        R = heads.gate_importance(model, batch, ce, gates)
    assert R.shape == (3, layout.num_layers, layout.num_heads)
    assert R.dtype == torch.float32
    assert torch.isfinite(R).all()
    assert (R > 0).any(dim=-1).all(), "every example and layer has a non-zero head"
    assert all(p.grad is None for p in model.parameters()), "no parameter gradients"


_VALUE_ROWS = {  # model type -> (value projection of layer {l}, first V row, Conv1D?, kv heads)
    "bert": ("bert.encoder.layer.{l}.attention.self.value", 0, False, 4),
    "roberta": ("roberta.encoder.layer.{l}.attention.self.value", 0, False, 4),
    "xlm-roberta": ("roberta.encoder.layer.{l}.attention.self.value", 0, False, 4),
    "electra": ("electra.encoder.layer.{l}.attention.self.value", 0, False, 4),
    "deberta-v2": ("deberta.encoder.layer.{l}.attention.self.value_proj", 0, False, 4),
    "distilbert": ("distilbert.transformer.layer.{l}.attention.v_lin", 0, False, 4),
    "albert": ("albert.encoder.albert_layer_groups.0.albert_layers.0.attention.value", 0, False, 4),
    "modernbert": ("model.layers.{l}.attn.Wqkv", 64, False, 4),
    "gpt2": ("transformer.h.{l}.attn.c_attn", 64, True, 4),
    "llama": ("model.layers.{l}.self_attn.v_proj", 0, False, 2),
    "qwen2": ("model.layers.{l}.self_attn.v_proj", 0, False, 2),
    "mistral": ("model.layers.{l}.self_attn.v_proj", 0, False, 2),
}


@pytest.mark.parametrize("model_type", heads.SUPPORTED_MODEL_TYPES)
def test_closed_gate_equals_zeroed_value_head(model_type):
    """Gate 0 on head h == head h's value rows zeroed (its context is then exactly 0): checks
    the gate's module and the head-major order of the context, independently of heads.py."""
    model = tiny_model(model_type).eval()
    name, start, conv1d, kv_heads = _VALUE_ROWS[model_type]
    H, d, layer, j = 4, 8, 1, 1  # value head j of layer 1
    query_heads = [h for h in range(H) if h // (H // kv_heads) == j]
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        proj = zeroed.get_submodule(name.format(l=layer))
        rows = slice(start + j * d, start + (j + 1) * d)
        (proj.weight[:, rows] if conv1d else proj.weight[rows]).zero_()
        if proj.bias is not None:
            proj.bias[rows].zero_()
    batch = make_batch(pad=pad_id(model))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    shared = model_type == "albert"  # one value projection for all layers
    with torch.no_grad():
        base = model(**inputs).logits
        ref = zeroed(**inputs).logits
        with heads.HeadGates(model) as gates:
            xi = gates.open(3)
            for h in query_heads:
                xi[:, :, h] = 0.0 if shared else xi[:, :, h]
                xi[:, layer, h] = 0.0
            gated = model(**inputs).logits
    assert not torch.allclose(base, ref, rtol=0, atol=1e-7), "the head matters"
    torch.testing.assert_close(gated, ref, rtol=1e-5, atol=1e-6)


def test_projection_names():
    expected = {
        "bert": "bert.encoder.layer.0.attention.output.dense",
        "distilbert": "distilbert.transformer.layer.0.attention.out_lin",
        "albert": "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.dense",
        "modernbert": "model.layers.0.attn.Wo",
        "gpt2": "transformer.h.0.attn.c_proj",
        "llama": "model.layers.0.self_attn.o_proj",
    }
    for model_type, name in expected.items():
        layout = heads.head_layout(tiny_model(model_type))
        assert layout.projections[0] == name
    albert = heads.head_layout(tiny_model("albert"))
    assert albert.projections == (albert.projections[0],) * 3


def test_wrapped_model_and_gqa_layout():
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = transformers.AutoModel.from_config(
                AutoConfig.for_model("llama", **_TINY["llama"])
            )
            self.head = torch.nn.Linear(32, 2)

        def forward(self, input_ids, attention_mask=None):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            return self.head(h.last_hidden_state[:, 0])

    model = Wrapper()
    layout = heads.head_layout(model)
    assert layout.projections[1] == "encoder.layers.1.self_attn.o_proj"
    assert (layout.num_heads, layout.head_dim) == (4, 8)
    batch = make_batch(lengths=(4, 4), num_labels=2)

    def loss(out, b):
        return F.cross_entropy(out, b["labels"], reduction="none")

    with heads.HeadGates(model) as gates:
        R = heads.gate_importance(model, batch, loss, gates)
    assert R.shape == (2, 2, 4)


def test_unknown_type_raises():
    cfg = AutoConfig.for_model(
        "t5", d_model=32, num_layers=1, num_heads=4, d_ff=64, d_kv=8, vocab_size=V
    )
    model = transformers.AutoModel.from_config(cfg)
    with pytest.raises(UnsupportedArchitectureError) as err:
        heads.head_layout(model)
    assert "'t5'" in str(err.value) and "bert" in str(err.value) and "llama" in str(err.value)
    assert isinstance(err.value, ModelError)


def test_supports_measure():
    assert heads.supports_measure("bert", "gate")
    assert heads.supports_measure("gpt2", "qkv")
    assert heads.supports_measure("bert", "legacy")
    assert not heads.supports_measure("llama", "legacy")
    assert not heads.supports_measure("t5", "gate")
    assert not heads.supports_measure("bert", "nope")


# ------------------------------------------------------------------------------- gates


def test_gate_gradient_equals_finite_difference():
    model = tiny_model("bert").double().eval()
    batch = make_batch()
    with heads.HeadGates(model) as gates:
        R = heads.gate_importance(model, batch, ce, gates).double()
        eps = 1e-6
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        for b, li, h in [(0, 0, 0), (1, 1, 2), (2, 0, 3), (0, 1, 1)]:
            values = []
            for sign in (1, -1):
                xi = gates.open(3, dtype=torch.float64)
                with torch.no_grad():
                    xi[b, li, h] += sign * eps
                    values.append(ce(model(**inputs), batch)[b].item())
            fd = (values[0] - values[1]) / (2 * eps)
            assert abs(fd) > 1e-8
            assert R[b, li, h].item() == pytest.approx(abs(fd), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_batched_equals_one_at_a_time_with_padding(model_type):
    model = tiny_model(model_type).double().eval()
    lengths = (7, 4, 2, 6)
    batch = make_batch(lengths=lengths, pad=pad_id(model))
    with heads.HeadGates(model) as gates:
        R = heads.gate_importance(model, batch, ce, gates)
        for b, n in enumerate(lengths):
            one = {k: v[b : b + 1, :n] if v.dim() == 2 else v[b : b + 1] for k, v in batch.items()}
            R1 = heads.gate_importance(model, one, ce, gates)
            torch.testing.assert_close(R[b : b + 1], R1, rtol=1e-5, atol=1e-9)


def test_unit_gates_are_bit_identical_and_removal():
    model = tiny_model("bert").eval()
    batch = make_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        plain = model(**inputs).logits
    projections = [model.get_submodule(n) for n in heads.head_layout(model).projections]
    with heads.HeadGates(model) as gates:
        assert all(len(m._forward_pre_hooks) == 1 for m in projections)
        gates.open(3)
        gated = model(**inputs).logits
        assert torch.equal(plain, gated)
        gates.close()
        with torch.no_grad():
            assert torch.equal(plain, model(**inputs).logits)
    assert all(len(m._forward_pre_hooks) == 0 for m in projections)
    assert all(
        len(m._forward_pre_hooks) == 0 and len(m._forward_hooks) == 0 for m in model.modules()
    )
    # also on exception
    with pytest.raises(RuntimeError), heads.HeadGates(model):
        raise RuntimeError("boom")
    assert all(
        len(m._forward_pre_hooks) == 0 and len(m._forward_hooks) == 0 for m in model.modules()
    )


def test_gate_errors():
    model = tiny_model("bert").eval()
    batch = make_batch()
    with heads.HeadGates(model) as gates:
        with pytest.raises(ModelError):
            heads.HeadGates(model)  # already gated
        gates.open(2)  # wrong batch size
        with pytest.raises(ModelError, match="batch"):
            model(input_ids=batch["input_ids"])
        with pytest.raises(ModelError, match="per example"):
            heads.gate_importance(model, batch, lambda out, b: ce(out, b).mean(), gates)
    with heads.HeadGates(model):  # can attach again after removal
        pass


def test_gates_zero_a_head_and_bf16_autocast():
    model = tiny_model("bert").eval()
    batch = make_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with heads.HeadGates(model) as gates:
        with torch.no_grad():
            base = model(**inputs).logits
            xi = gates.open(3)
            xi[1, 0, 2] = 0.0
            masked = model(**inputs).logits
        assert torch.equal(base[0], masked[0]) and not torch.equal(base[1], masked[1])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            R = heads.gate_importance(model, batch, ce, gates)
    assert R.dtype == torch.float32 and torch.isfinite(R).all() and (R > 0).any()


def test_albert_call_order_gating():
    model = tiny_model("albert").double().eval()  # 3 layers, one shared projection
    layout = heads.head_layout(model)
    assert layout.num_layers == 3 and len(set(layout.projections)) == 1
    batch = make_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with heads.HeadGates(model) as gates:
        R = heads.gate_importance(model, batch, ce, gates).double()
        eps = 1e-6
        for b, li, h in [(0, 0, 1), (1, 1, 0), (2, 2, 3)]:
            values = []
            for sign in (1, -1):
                xi = gates.open(3, dtype=torch.float64)
                with torch.no_grad():
                    xi[b, li, h] += sign * eps
                    values.append(ce(model(**inputs), batch)[b].item())
            fd = (values[0] - values[1]) / (2 * eps)
            assert R[b, li, h].item() == pytest.approx(abs(fd), rel=1e-5, abs=1e-9)
        # a gate of the last call leaves the earlier layers' outputs alone
        with torch.no_grad():
            xi = gates.open(3, dtype=torch.float64)
            xi[:, 2, :] = 0.0
            out = model(**inputs, output_hidden_states=True).hidden_states
            gates.close()
            ref = model(**inputs, output_hidden_states=True).hidden_states
        assert torch.equal(out[2], ref[2]) and not torch.equal(out[3], ref[3])


# ------------------------------------------------------------------------------- qkv


def _rows_mean(g, heads_in_part, d):
    """(heads_in_part,) mean |g| over each head's rows; g has rows = output features."""
    return torch.stack([g[i * d : (i + 1) * d].abs().mean() for i in range(heads_in_part)])


_QKV_WEIGHTS = {  # model type -> Q, K, V weight names of layer {l} (one name: fused rows Q|K|V)
    "bert": [
        f"bert.encoder.layer.{{l}}.attention.self.{p}.weight" for p in ("query", "key", "value")
    ],
    "electra": [
        f"electra.encoder.layer.{{l}}.attention.self.{p}.weight" for p in ("query", "key", "value")
    ],
    "deberta-v2": [
        f"deberta.encoder.layer.{{l}}.attention.self.{p}_proj.weight"
        for p in ("query", "key", "value")
    ],
    "distilbert": [
        f"distilbert.transformer.layer.{{l}}.attention.{p}_lin.weight" for p in ("q", "k", "v")
    ],
    "modernbert": ["model.layers.{l}.attn.Wqkv.weight"],
}


@pytest.mark.parametrize("model_type", list(_QKV_WEIGHTS))
def test_qkv_rows_per_head_equal_one_example_autograd(model_type, monkeypatch):
    model = tiny_model(model_type).double().eval()
    lengths = (6, 3)
    batch = make_batch(lengths=lengths, pad=pad_id(model))
    R = heads.qkv_importance(model, batch, ce)
    assert R.shape == (2, 2, 4)
    assert all(p.grad is None for p in model.parameters())
    for b, n in enumerate(lengths):
        one = {k: v[b : b + 1, :n] if v.dim() == 2 else v[b : b + 1] for k, v in batch.items()}
        model.zero_grad()
        ce(model(input_ids=one["input_ids"]), one).sum().backward()
        for li in range(2):
            grads = [model.get_parameter(w.format(l=li)).grad for w in _QKV_WEIGHTS[model_type]]
            if len(grads) == 1:  # fused: rows Q | K | V
                grads = list(grads[0].split(32))
            ref = sum(_rows_mean(g, 4, 8) for g in grads) / 3
            torch.testing.assert_close(R[b, li].double(), ref, rtol=1e-5, atol=1e-12)
        model.zero_grad(set_to_none=True)
    monkeypatch.setattr(heads.measures, "PER_EXAMPLE_ELEMENTS", 1)  # one example at a time
    torch.testing.assert_close(heads.qkv_importance(model, batch, ce), R, rtol=1e-12, atol=0)


def test_qkv_gpt2_fused_and_llama_gqa():
    gpt2 = tiny_model("gpt2").double().eval()
    batch = make_batch(lengths=(5,))
    R = heads.qkv_importance(gpt2, batch, ce)
    ce(gpt2(input_ids=batch["input_ids"]), batch).sum().backward()
    for li, block in enumerate(gpt2.transformer.h):
        g = block.attn.c_attn.weight.grad.t()  # Conv1D (in, 3*H*d) -> rows Q|K|V x in
        ref = sum(_rows_mean(part, 4, 8) for part in (g[:32], g[32:64], g[64:])) / 3
        torch.testing.assert_close(R[0, li].double(), ref, rtol=1e-5, atol=1e-12)

    llama = tiny_model("llama").double().eval()  # 4 query heads, 2 key/value heads
    R = heads.qkv_importance(llama, batch, ce)
    ce(llama(input_ids=batch["input_ids"]), batch).sum().backward()
    for li, layer in enumerate(llama.model.layers):
        a = layer.self_attn
        gq, gk, gv = a.q_proj.weight.grad, a.k_proj.weight.grad, a.v_proj.weight.grad
        assert gk.shape[0] == 16
        # query heads 0,1 share key/value head 0; heads 2,3 share key/value head 1
        kv = (_rows_mean(gk, 2, 8) + _rows_mean(gv, 2, 8)).repeat_interleave(2)
        ref = (_rows_mean(gq, 4, 8) + kv) / 3
        torch.testing.assert_close(R[0, li].double(), ref, rtol=1e-5, atol=1e-12)


def test_qkv_albert_per_call_equals_untied_weights():
    """ALBERT shares Q/K/V across layers; each call's share must equal the gradient of an
    untied copy of the weight used only by that call."""
    model = tiny_model("albert").double().eval()  # 3 layers, one shared layer
    batch = make_batch(lengths=(6,))
    R = heads.qkv_importance(model, batch, ce)
    att = model.albert.encoder.albert_layer_groups[0].albert_layers[0].attention
    copies = {}
    for part in ("query", "key", "value"):
        module = getattr(att, part)
        copies[part] = [module.weight.detach().clone().requires_grad_(True) for _ in range(3)]

        def forward(x, module=module, ws=copies[part], n=[0]):  # noqa: B006 (call counter)
            w = ws[n[0] % 3]
            n[0] += 1
            return F.linear(x, w, module.bias)

        module.forward = forward
    ce(model(input_ids=batch["input_ids"]), batch).sum().backward()
    for li in range(3):
        ref = sum(_rows_mean(copies[p][li].grad, 4, 8) for p in ("query", "key", "value")) / 3
        torch.testing.assert_close(R[0, li].double(), ref, rtol=1e-5, atol=1e-12)


# ------------------------------------------------------------------------------- legacy


def test_legacy_matches_original_definition():
    model = tiny_model("bert", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3).eval()
    lengths = (6, 3, 5)
    batch = make_batch(lengths=lengths)
    torch.manual_seed(123)
    R = heads.legacy_importance(model, batch, ce)
    assert not model.training, "mode restored"
    assert all(p.grad is None for p in model.parameters())

    # the original: model.train(); batch of one; loss.backward(); for every
    # "attention.self" weight: grad.view(out, H, d).permute(1, 0, 2), abs; per layer (Q, K, V)
    # K_V = |gK| + |gV|; head value = mean(K_V[h]).
    torch.manual_seed(123)
    model.train()
    ref = torch.zeros(3, 2, 4)
    for b, n in enumerate(lengths):
        one = {k: v[b : b + 1, :n] if v.dim() == 2 else v[b : b + 1] for k, v in batch.items()}
        inputs = {k: v for k, v in one.items() if k != "labels"}
        F.cross_entropy(model(**inputs).logits, one["labels"]).backward()
        grads = {}
        for name, p in model.named_parameters():
            if "attention.self" in name and "weight" in name:
                grads[name] = p.grad.detach().view(p.shape[0], 4, 8).permute(1, 0, 2).abs()
        keys = list(grads)
        for layer, i in enumerate(range(0, len(keys), 3)):
            kv = grads[keys[i + 1]] + grads[keys[i + 2]]
            ref[b, layer] = torch.stack([kv[h].mean() for h in range(4)])
        model.zero_grad(set_to_none=True)
    model.eval()
    torch.testing.assert_close(R, ref, rtol=1e-6, atol=1e-9)
    # dropout is on: a different seed gives a different matrix
    torch.manual_seed(7)
    assert not torch.equal(heads.legacy_importance(model, batch, ce), R)


def test_legacy_rejects_other_families():
    with pytest.raises(UnsupportedArchitectureError, match="bert"):
        heads.legacy_importance(tiny_model("gpt2"), make_batch(), ce)


# ------------------------------------------------------------------------------- GPU (opt-in)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_gates_on_cuda(model_type):
    model = tiny_model(model_type).eval()
    lengths = (7, 4, 2)
    batch = make_batch(lengths=lengths, pad=pad_id(model))
    ref_model = tiny_model(model_type).double().eval()
    with heads.HeadGates(ref_model) as gates:
        ref = heads.gate_importance(ref_model, batch, ce, gates)
    model = model.cuda()
    batch = {k: v.cuda() for k, v in batch.items()}
    with heads.HeadGates(model) as gates:
        R = heads.gate_importance(model, batch, ce, gates)
        assert R.device.type == "cuda"
        torch.testing.assert_close(R.cpu(), ref, rtol=1e-3, atol=1e-6)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            Rb = heads.gate_importance(model, batch, ce, gates)
    assert Rb.dtype == torch.float32 and torch.isfinite(Rb).all()
    assert torch.corrcoef(torch.stack([Rb.flatten().cpu(), ref.flatten().float()]))[0, 1] > 0.9
    Rq = heads.qkv_importance(model, batch, ce)
    assert Rq.device.type == "cuda" and torch.isfinite(Rq).all()
