"""Named freeze policies for transfer learning, for CGAT and for MatGL's M3GNet and MEGNet.

A model is seen as an ordered list of blocks from input to output: ``embeddings``, the
message-passing steps ``mp.0 .. mp.{n-1}``, ``readout`` and ``head``. A policy names the blocks that
train; every other parameter gets ``requires_grad=False`` and its modules are kept in eval mode
(see :func:`keep_frozen_in_eval`), so frozen normalisation or dropout layers do not change either.
The reference implementation only left frozen weights out of the optimiser; they still computed
gradients and stayed in training mode.

Policies:
    ``"full"``: everything trains (the paper's "full transfer").
    ``"head"``: only the residual output network (the paper's "only regression head").
    ``"readout+head"``: readout (for CGAT including the Roost context that conditions it) and head.
    ``"last:K"``: the last K message-passing steps, readout and head.
    ``"frozen-embeddings"``: everything except the input embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

POLICIES = ("full", "head", "readout+head", "last:K", "frozen-embeddings", "fidelity:NAME")


def _m3gnet_blocks(model: nn.Module) -> dict[str, list[nn.Module]]:
    blocks = {"embeddings": [m for m in (model.bond_expansion, model.embedding, model.basis_expansion)
                             if isinstance(m, nn.Module)]}
    for i in range(model.n_blocks):
        blocks[f"mp.{i}"] = [model.three_body_interactions[i], model.graph_layers[i]]
    blocks["readout"] = [model.readout] if hasattr(model, "readout") else []
    blocks["head"] = [model.final_layer]
    return blocks


def _megnet_blocks(model: nn.Module) -> dict[str, list[nn.Module]]:
    blocks = {"embeddings": [model.bond_expansion, model.embedding, model.edge_encoder, model.node_encoder,
                             model.state_encoder]}
    blocks.update({f"mp.{i}": [b] for i, b in enumerate(model.blocks)})
    blocks["readout"] = [model.edge_s2s, model.node_s2s]
    blocks["head"] = [model.output_proj]
    return blocks


def _adapters() -> list[tuple[type, object]]:
    """Block declarations for MatGL's models, which do not declare their own."""
    from matgl.models import M3GNet, MEGNet

    return [(M3GNet, _m3gnet_blocks), (MEGNet, _megnet_blocks)]


def model_blocks(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Ordered blocks (input to output) of a model.

    A model declares them with a ``transfer_blocks()`` method (CGAT does); MatGL's M3GNet and MEGNet
    get theirs from adapters here.
    """
    declared = getattr(model, "transfer_blocks", None)
    if callable(declared):
        return declared()
    for cls, blocks in _adapters():
        if isinstance(model, cls):
            return blocks(model)
    raise TypeError(f"no freeze policies for {type(model).__name__}: give it a transfer_blocks() method "
                    "returning {block name: [modules]} from input to output (CGAT, M3GNet and MEGNet have them)")


def trainable_blocks(blocks: list[str], policy: str) -> list[str]:
    """Names of the blocks a policy trains."""
    mp = [b for b in blocks if b.startswith("mp.")]
    fidelities = [b for b in blocks if b.startswith("fidelity.")]  # a multi-fidelity CGAT's conditioning
    if policy == "full":
        return list(blocks)
    if policy == "head":
        return ["head"]
    if policy == "readout+head":
        return ["readout", *fidelities, "head"]
    if policy.startswith("fidelity:"):  # one fidelity's scale and shift alone: the others cannot change
        wanted = policy.split(":", 1)[1].lower()  # fidelity names are case-insensitive everywhere
        block = next((b for b in fidelities if b.split(".", 1)[1].lower() == wanted), None)
        if block is None:
            raise ValueError(f"policy {policy!r}: the model's fidelities are "
                             f"{[b.split('.', 1)[1] for b in fidelities] or 'none (a single-fidelity model)'}")
        return [block]
    if policy == "frozen-embeddings":
        return [b for b in blocks if b != "embeddings"]
    if policy.startswith("last:"):
        try:
            k = int(policy.split(":", 1)[1])
        except ValueError:
            k = -1
        if not 0 <= k <= len(mp):
            raise ValueError(f"policy {policy!r}: K must be an integer in 0..{len(mp)} (message-passing steps)")
        return mp[len(mp) - k :] + ["readout", *fidelities, "head"]
    raise ValueError(f"unknown freeze policy {policy!r}; choose from {', '.join(POLICIES)}")


@dataclass
class PolicyReport:
    """Parameter counts per block after applying a policy."""

    policy: str
    rows: list[tuple[str, int, int]]  # (block, trainable, frozen)

    @property
    def trainable(self) -> int:
        return sum(r[1] for r in self.rows)

    @property
    def frozen(self) -> int:
        return sum(r[2] for r in self.rows)

    def __str__(self) -> str:
        lines = [f"policy {self.policy!r}: {self.trainable:,} trainable, {self.frozen:,} frozen parameters",
                 f"  {'block':14s} {'trainable':>12s} {'frozen':>12s}"]
        lines += [f"  {b:14s} {t:12,d} {f:12,d}" for b, t, f in self.rows]
        return "\n".join(lines)


def apply_policy(model: nn.Module, policy: str) -> PolicyReport:
    """Freeze everything the policy does not train; returns per-block counts."""
    blocks = model_blocks(model)
    train = set(trainable_blocks(list(blocks), policy))
    for p in model.parameters():
        p.requires_grad_(False)
    owned: set[int] = set()
    rows = []
    for name, modules in blocks.items():
        params = [p for m in modules for p in m.parameters() if id(p) not in owned]
        owned.update(id(p) for p in params)
        for p in params:
            p.requires_grad_(name in train)
        n = sum(p.numel() for p in params)
        rows.append((name, n if name in train else 0, 0 if name in train else n))
    rest = [p for p in model.parameters() if id(p) not in owned]
    if rest:  # parameters outside every block (none for the supported models) follow "full" only
        for p in rest:
            p.requires_grad_(policy == "full")
        n = sum(p.numel() for p in rest)
        rows.append(("other", n if policy == "full" else 0, 0 if policy == "full" else n))
    model._frozen_modules = [m for name, mods in blocks.items() if name not in train for m in mods]
    keep_frozen_in_eval(model)
    return PolicyReport(policy, rows)


def keep_frozen_in_eval(model: nn.Module) -> None:
    """Put the frozen blocks of a model back in eval mode (call after ``model.train()``)."""
    for m in getattr(model, "_frozen_modules", []):
        m.eval()


def unfreeze_next(model: nn.Module) -> str | None:
    """Gradual unfreezing: make the highest still-frozen block trainable; returns its name."""
    blocks = model_blocks(model)
    for name in reversed(list(blocks)):
        params = [p for m in blocks[name] for p in m.parameters()]
        if params and not all(p.requires_grad for p in params):
            for p in params:
                p.requires_grad_(True)
            for m in blocks[name]:
                m.train(model.training)  # frozen blocks were held in eval mode
            model._frozen_modules = [m for m in getattr(model, "_frozen_modules", []) if m not in blocks[name]]
            return name
    return None


def layerwise_param_groups(model: nn.Module, lr: float, decay: float) -> list[dict]:
    """Optimiser groups with learning rate ``lr * decay**depth``, depth 0 for the head, +1 per block below.

    Frozen parameters are included (AdamW skips them while their gradient is None), so gradual
    unfreezing needs no new optimiser.
    """
    blocks = model_blocks(model)
    groups, seen = [], set()
    for depth, name in enumerate(reversed(list(blocks))):
        params = [p for m in blocks[name] for p in m.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": lr * decay**depth, "name": name})
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": lr, "name": "other"})
    return groups
