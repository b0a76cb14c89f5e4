"""Neural base learners: an MLP on the feature vector, an LSTM and a Transformer encoder on the
last N days of chosen features per stock, behind the interface of the tree learners.

Library: JAX (``jax[cpu]``) with optax, in the optional ``neural`` extra. Measured on this
2-core machine (README, "Neural family"): 85 MiB download, ~390 MB installed, 24 s to install
into a fresh venv; PyPI's Linux ``torch`` wheel pulls 20 ``nvidia-*``/CUDA wheels, 2.8 GiB to
download. JAX compiles each model once with XLA, so a small LSTM step runs at C speed on CPU;
the GPU path is the ``jax[cuda12]`` wheel in the GPU image and ``compute.device: cuda``.

A fitted model is one ``<name>.nn.safetensors`` file: the weights as tensors and the spec
(architecture, hyperparameters, features, scaler, best epoch) as the safetensors metadata, so
loading reads numbers and JSON and never unpickles anything.

Classes are SELL=0, HOLD=1, BUY=2 like the trees; the loss is cross-entropy with the balanced
class weights the ensemble passes. Training stops early on an inner purged walk-forward
validation block (the last ``val_fraction`` of the training dates, after a purge of the
horizon: no training label reaches it) and keeps the weights of the best validation epoch;
seeds fix the initialisation and the batch order, so the same rows give the same model.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import NEURAL_DEFAULTS
from turbomode.errors import TurboModeError

ARCHITECTURES: tuple[str, ...] = ("mlp", "lstm", "transformer")
SEQUENCE_ARCHITECTURES: tuple[str, ...] = ("lstm", "transformer")
NEURAL_SUFFIX = ".nn.safetensors"  # the same as turbomode.models.persistence.NEURAL_SUFFIX
N_CLASSES = 3

DEFAULT_PARAMS = NEURAL_DEFAULTS


class NeuralError(TurboModeError):
    """A neural learner cannot be built, fitted or loaded (missing extra, no GPU, bad input)."""


def _jax() -> Any:
    try:
        import jax
    except ImportError as exc:  # the optional extra
        raise NeuralError(
            "the neural learners need JAX: pip install 'turbomode[neural]' "
            "(jax[cuda12] on a GPU node)"
        ) from exc
    return jax


# ---- point-in-time windows ------------------------------------------------------------------


@dataclass
class Windows:
    """For each row, the last ``window`` rows of its symbol dated ≤ its own date (itself
    last), left-padded: ``values`` n × T × k (padding NaN) and ``mask`` n × T (True: a row)."""

    values: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def take(self, idx: np.ndarray) -> Windows:
        return Windows(self.values[idx], self.mask[idx])


def build_windows(
    frame: pd.DataFrame,
    features: list[str],
    window: int,
    *,
    symbol: str = "symbol",
    date: str = "date",
) -> Windows:
    """Sequences for the rows of ``frame`` in its order, built point-in-time: a window at t
    holds only rows of the same symbol dated ≤ t, so it needs nothing a scan at t lacks.

    History comes from ``frame`` itself: pass the rows before the ones you score (training
    rows before a test window; a scan's last ``window`` days) or early windows are short.
    """
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    missing = [c for c in [symbol, date, *features] if c not in frame.columns]
    if missing:
        raise NeuralError(f"sequence frame lacks column(s) {missing[:10]}")
    n, k = len(frame), len(features)
    syms = frame[symbol].astype(str).to_numpy()
    days = pd.to_datetime(frame[date]).to_numpy(dtype="datetime64[ns]")
    order = np.lexsort((days, syms))  # by symbol, then date
    s_sorted, d_sorted = syms[order], days[order]
    same = (s_sorted[1:] == s_sorted[:-1]) & (d_sorted[1:] == d_sorted[:-1])
    if same.any():
        raise NeuralError("sequence frame has duplicate (symbol, date) rows")
    values = frame[features].to_numpy(dtype=np.float32)[order]
    new_group = np.r_[True, s_sorted[1:] != s_sorted[:-1]] if n else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0)) if n else new_group
    out = np.full((n, window, k), np.nan, dtype=np.float32)
    mask = np.zeros((n, window), dtype=bool)
    pos = np.arange(n)
    for lag in range(window):
        src = pos - lag
        ok = src >= group_start
        out[ok, window - 1 - lag] = values[src[ok]]
        mask[ok, window - 1 - lag] = True
    values_out = np.empty_like(out)
    mask_out = np.empty_like(mask)
    values_out[order], mask_out[order] = out, mask
    return Windows(values_out, mask_out)


# ---- the networks (pure functions of a flat dict of weights) --------------------------------


def _init(arch: str, k: int, p: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Weights ~ N(0, 1/fan_in), biases 0; LSTM forget-gate bias 1 (remember by default)."""
    rng = np.random.default_rng(seed)
    h, T = int(p["hidden"]), int(p["window"])

    def dense(name: str, fan_in: int, fan_out: int) -> dict[str, np.ndarray]:
        w = rng.normal(0.0, 1.0 / np.sqrt(fan_in), (fan_in, fan_out)).astype(np.float32)
        return {f"{name}.w": w, f"{name}.b": np.zeros(fan_out, np.float32)}

    def norm(name: str, d: int) -> dict[str, np.ndarray]:
        return {f"{name}.g": np.ones(d, np.float32), f"{name}.b": np.zeros(d, np.float32)}

    if arch == "mlp":
        return {**dense("l1", k, h), **dense("l2", h, h), **dense("out", h, N_CLASSES)}
    if arch == "lstm":
        w = {**dense("x", k, 4 * h), **dense("out", h, N_CLASSES)}
        w["h.w"] = rng.normal(0.0, 1.0 / np.sqrt(h), (h, 4 * h)).astype(np.float32)
        w["x.b"][h : 2 * h] = 1.0  # gates i, f, g, o
        return w
    if arch == "transformer":
        if h % int(p["heads"]):
            raise NeuralError(f"hidden={h} must be a multiple of heads={p['heads']}")
        w = {**dense("in", k, h), **dense("q", h, h), **dense("k", h, h), **dense("v", h, h)}
        w |= {**dense("o", h, h), **dense("ff1", h, 2 * h), **dense("ff2", 2 * h, h)}
        w |= {**norm("ln1", h), **norm("ln2", h), **norm("lnf", h), **dense("out", h, N_CLASSES)}
        w["pos"] = rng.normal(0.0, 0.02, (T, h)).astype(np.float32)
        return w
    raise NeuralError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")


@functools.cache
def _forward(arch: str, heads: int) -> Any:
    """``f(weights, x, mask) -> logits`` for ``arch`` (jax.numpy; traced once by jit)."""
    jax = _jax()
    jnp = jax.numpy

    def dense(w: Any, name: str, x: Any) -> Any:
        return x @ w[f"{name}.w"] + w[f"{name}.b"]

    def layer_norm(w: Any, name: str, x: Any) -> Any:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * w[f"{name}.g"] + w[f"{name}.b"]

    def mlp(w: Any, x: Any, mask: Any) -> Any:
        z = jax.nn.relu(dense(w, "l1", x))
        return dense(w, "out", jax.nn.relu(dense(w, "l2", z)))

    def lstm(w: Any, x: Any, mask: Any) -> Any:
        n, h = x.shape[0], w["h.w"].shape[0]
        xs = dense(w, "x", x)  # n × T × 4h, input projections of every step at once

        def step(carry: Any, inp: Any) -> Any:
            hs, cs = carry
            xt, mt = inp
            i, f, g, o = jnp.split(xt + hs @ w["h.w"], 4, axis=-1)
            c_new = jax.nn.sigmoid(f) * cs + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
            m = mt[:, None]
            return (jnp.where(m, h_new, hs), jnp.where(m, c_new, cs)), None

        zeros = jnp.zeros((n, h), x.dtype)
        (hT, _), _ = jax.lax.scan(step, (zeros, zeros), (xs.swapaxes(0, 1), mask.T))
        return dense(w, "out", hT)

    def transformer(w: Any, x: Any, mask: Any) -> Any:
        n, T, _ = x.shape
        z = dense(w, "in", x) + w["pos"]
        d = z.shape[-1]
        dh = d // heads

        def split(t: Any) -> Any:
            return t.reshape(n, T, heads, dh).transpose(0, 2, 1, 3)

        a = layer_norm(w, "ln1", z)
        q, k, v = (split(dense(w, nm, a)) for nm in ("q", "k", "v"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
        scores = jnp.where(mask[:, None, None, :], scores, -1e9)  # padded days are not keys
        att = (jax.nn.softmax(scores, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(n, T, d)
        z = z + dense(w, "o", att)
        z = z + dense(w, "ff2", jax.nn.gelu(dense(w, "ff1", layer_norm(w, "ln2", z))))
        return dense(w, "out", layer_norm(w, "lnf", z[:, -1]))  # the row's own (last) day

    return {"mlp": mlp, "lstm": lstm, "transformer": transformer}[arch]


@functools.cache
def _compiled(arch: str, heads: int, learning_rate: float, weight_decay: float) -> Any:
    """The jitted (optimizer, train step, loss, forward) of one configuration, built once per
    process: every fit of the ensemble's folds reuses XLA's compiled code."""
    jax = _jax()
    import optax

    forward = _forward(arch, heads)

    def loss_fn(wts: Any, x: Any, m: Any, yy: Any, ww: Any) -> Any:
        logp = jax.nn.log_softmax(forward(wts, x, m))
        nll = -jax.numpy.take_along_axis(logp, yy[:, None], axis=1)[:, 0]
        return (nll * ww).sum() / jax.numpy.maximum(ww.sum(), 1e-9)

    opt = optax.adamw(learning_rate, weight_decay=weight_decay)

    @jax.jit
    def step(wts: Any, state: Any, x: Any, m: Any, yy: Any, ww: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(wts, x, m, yy, ww)
        updates, state = opt.update(grads, state, wts)
        return optax.apply_updates(wts, updates), state, loss

    return opt, step, jax.jit(loss_fn), jax.jit(forward)


# ---- the learner ----------------------------------------------------------------------------


@dataclass
class NeuralClassifier:
    """One neural learner: ``fit`` on rows, ``predict_proba`` n × 3, save/load safetensors.

    Inputs are a feature matrix (MLP) or :class:`Windows` (LSTM, Transformer).
    """

    arch: Literal["mlp", "lstm", "transformer"]
    features: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    horizon: int = 1
    seed: int = 0
    device: Literal["cpu", "cuda"] = "cpu"
    weights_: dict[str, np.ndarray] = field(default_factory=dict)
    mean_: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    std_: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    history_: dict[str, Any] = field(default_factory=dict)
    classes_: np.ndarray = field(default_factory=lambda: np.arange(N_CLASSES))

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise NeuralError(f"unknown architecture {self.arch!r}; expected {ARCHITECTURES}")
        self.params = {**DEFAULT_PARAMS, **self.params}

    @property
    def is_sequence(self) -> bool:
        return self.arch in SEQUENCE_ARCHITECTURES

    def _arrays(self, X: np.ndarray | Windows) -> tuple[np.ndarray, np.ndarray]:
        """Standardised float32 inputs (NaN → 0, the training mean) and the step mask."""
        if self.is_sequence:
            if not isinstance(X, Windows):
                raise NeuralError(f"{self.arch} takes Windows (build_windows), not a matrix")
            vals, mask = X.values, X.mask
            if vals.shape[1:] != (int(self.params["window"]), len(self.features)):
                raise NeuralError(f"{self.arch}: windows of shape {vals.shape[1:]}")
        else:
            vals = np.asarray(X.values if isinstance(X, Windows) else X, dtype=np.float32)
            if vals.ndim != 2 or vals.shape[1] != len(self.features):
                raise NeuralError(f"mlp: expected {len(self.features)} features, got {vals.shape}")
            mask = np.ones((len(vals), 1), bool)
        z = (vals - self.mean_) / self.std_
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32), mask

    def _device(self) -> Any:
        jax = _jax()
        if self.device == "cuda":
            try:
                return jax.devices("gpu")[0]
            except RuntimeError as exc:
                raise NeuralError(
                    "compute.device is cuda but JAX sees no GPU (install jax[cuda12])"
                ) from exc
        return jax.devices("cpu")[0]

    def fit(
        self,
        X: np.ndarray | Windows,
        y: np.ndarray,
        dates: Any,
        sample_weight: np.ndarray | None = None,
    ) -> NeuralClassifier:
        """Train with early stopping on the inner purged validation block of ``dates``."""
        from turbomode.models.validation import WalkForward, walk_forward_splits

        jax = _jax()
        y = np.asarray(y, dtype=np.int32)
        w = np.ones(len(y), np.float32) if sample_weight is None else sample_weight
        w = np.asarray(w, dtype=np.float32)
        raw = X.values if isinstance(X, Windows) else np.asarray(X, np.float32)
        flat = raw.reshape(-1, raw.shape[-1])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column is allowed
            mean = np.nan_to_num(np.nanmean(flat, axis=0))
            std = np.nanstd(flat, axis=0)
        self.mean_ = mean.astype(np.float32)
        self.std_ = np.where(np.isfinite(std) & (std > 0), std, 1.0).astype(np.float32)
        xs, ms = self._arrays(X)

        n_days = pd.Series(pd.to_datetime(np.asarray(dates))).nunique()
        val_days = max(1, int(n_days * float(self.params["val_fraction"])))
        fold = walk_forward_splits(
            dates,
            self.horizon,
            WalkForward(n_folds=1, test_days=val_days, min_train_days=max(1, n_days // 2)),
        )[0]
        tr, va = fold.train_idx, fold.test_idx

        p = self.params
        opt, step, eval_loss, _ = self._compiled()
        bs = int(p["batch_size"])
        rng = np.random.default_rng(self.seed)
        device = self._device()
        with jax.default_device(device):
            wts = {k: jax.numpy.asarray(v) for k, v in self._init(xs).items()}
            state = opt.init(wts)
            best, best_epoch, best_loss, losses = wts, -1, np.inf, []
            for epoch in range(int(p["max_epochs"])):
                perm = tr[rng.permutation(len(tr))]
                for b in range(0, len(perm), bs):
                    idx = _pad(perm[b : b + bs], bs)
                    ww = np.where(np.arange(bs) < len(perm[b : b + bs]), w[idx], 0.0)
                    wts, state, _ = step(wts, state, xs[idx], ms[idx], y[idx], ww)
                val = self._batched_loss(eval_loss, wts, xs, ms, y, w, va, bs)
                losses.append(round(val, 6))
                if val < best_loss - 1e-5:
                    best, best_epoch, best_loss = wts, epoch, val
                elif epoch - best_epoch >= int(p["patience"]):
                    break
        self.weights_ = {k: np.asarray(v) for k, v in best.items()}
        self.history_ = {"best_epoch": best_epoch, "val_loss": losses, "n_val": len(va)}
        return self

    def _compiled(self) -> Any:
        p = self.params
        return _compiled(
            self.arch, int(p["heads"]), float(p["learning_rate"]), float(p["weight_decay"])
        )

    def _init(self, xs: np.ndarray) -> dict[str, np.ndarray]:
        return _init(self.arch, xs.shape[-1], self.params, self.seed)

    @staticmethod
    def _batched_loss(
        fn: Any, wts: Any, xs: Any, ms: Any, y: Any, w: Any, idx: np.ndarray, bs: int
    ) -> float:
        total, weight = 0.0, 0.0
        for b in range(0, len(idx), bs):
            part = _pad(idx[b : b + bs], bs)
            ww = np.where(np.arange(bs) < len(idx[b : b + bs]), w[part], 0.0)
            total += float(fn(wts, xs[part], ms[part], y[part], ww)) * float(ww.sum())
            weight += float(ww.sum())
        return total / max(weight, 1e-9)

    def predict_proba(self, X: np.ndarray | Windows) -> np.ndarray:
        """P(SELL), P(HOLD), P(BUY) per row (fixed-size batches: one compiled shape)."""
        if not self.weights_:
            raise NeuralError(f"the {self.arch} learner is not fitted")
        jax = _jax()
        xs, ms = self._arrays(X)
        forward = self._compiled()[3]
        bs = int(self.params["batch_size"])
        out = np.zeros((len(xs), N_CLASSES))
        with jax.default_device(self._device()):
            wts = {k: jax.numpy.asarray(v) for k, v in self.weights_.items()}
            for b in range(0, len(xs), bs):
                idx = _pad(np.arange(b, min(b + bs, len(xs))), bs)
                logits = np.asarray(forward(wts, xs[idx], ms[idx]), dtype=np.float64)
                out[b : b + bs] = _softmax(logits)[: min(bs, len(xs) - b)]
        return out

    # ---- persistence ----------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "features": self.features,
            "params": self.params,
            "horizon": self.horizon,
            "seed": self.seed,
            "history": self.history_,
        }

    def save(self, path: Path | str) -> Path:
        """Weights and scaler as tensors, the spec as JSON metadata, in one safetensors file."""
        from safetensors.numpy import save_file

        if not self.weights_:
            raise NeuralError(f"the {self.arch} learner is not fitted")
        path = Path(path)
        tensors = {f"w.{k}": np.ascontiguousarray(v) for k, v in self.weights_.items()}
        tensors |= {"scaler.mean": self.mean_, "scaler.std": self.std_}
        save_file(tensors, str(path), metadata={"turbomode": json.dumps(self.spec())})
        return path

    @classmethod
    def load(cls, path: Path | str, device: Literal["cpu", "cuda"] = "cpu") -> NeuralClassifier:
        """Read :meth:`save`'s file: tensors and JSON only, nothing executed."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if "turbomode" not in meta:
                raise NeuralError(f"{path} is not a TurboMode neural model (no spec metadata)")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (not a dict)
        spec = json.loads(meta["turbomode"])
        model = cls(
            arch=spec["arch"],
            features=list(spec["features"]),
            params=dict(spec["params"]),
            horizon=int(spec["horizon"]),
            seed=int(spec["seed"]),
            device=device,
        )
        model.weights_ = {k[2:]: v for k, v in tensors.items() if k.startswith("w.")}
        model.mean_, model.std_ = tensors["scaler.mean"], tensors["scaler.std"]
        model.history_ = dict(spec.get("history", {}))
        expected = set(_init(model.arch, len(model.features), model.params, 0))
        if set(model.weights_) != expected:
            raise NeuralError(f"{path}: weights do not match a {model.arch} network")
        return model


def _pad(idx: np.ndarray, size: int) -> np.ndarray:
    """``idx`` padded to ``size`` by repeating its first entry (weights of padding are 0)."""
    if len(idx) == size:
        return idx
    return np.concatenate([idx, np.full(size - len(idx), idx[0] if len(idx) else 0)])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- hybrid voting --------------------------------------------------------------------------

HYBRID_THRESHOLDS: dict[str, float] = {"transformer": 0.50, "lstm": 0.40, "mlp": 0.40}
CONSENSUS_BOOST: dict[int, float] = {2: 1.10, 3: 1.20}


def hybrid_vote(
    probas: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    min_votes: int = 2,
) -> np.ndarray:
    """The seed's hybrid vote as class probabilities.

    A model votes BUY (SELL) when that class is its most probable of the two and reaches its
    threshold (Transformer 0.50, LSTM and MLP 0.40). A side with at least ``min_votes`` votes
    and more than the other side is the signal; its strength is the weighted mean of the voters'
    probabilities × the consensus boost (+10 % for two votes, +20 % for three), capped at 1,
    and the rest of the mass goes to HOLD. No signal: HOLD with probability 1.
    """
    names = list(probas)
    if not names:
        raise NeuralError("hybrid voting needs at least one model")
    th = {**HYBRID_THRESHOLDS, **(thresholds or {})}
    wt = {n: 1.0 for n in names} | dict(weights or {})
    n = len(next(iter(probas.values())))
    votes = {c: np.zeros(n) for c in (0, 2)}
    mass = {c: np.zeros(n) for c in (0, 2)}
    weight = {c: np.zeros(n) for c in (0, 2)}
    for name in names:
        p = np.asarray(probas[name], dtype=np.float64)
        for c, other in ((0, 2), (2, 0)):
            vote = (p[:, c] >= th.get(name, 0.5)) & (p[:, c] > p[:, other])
            votes[c] += vote
            mass[c] += np.where(vote, wt[name] * p[:, c], 0.0)
            weight[c] += np.where(vote, wt[name], 0.0)
    out = np.zeros((n, N_CLASSES))
    out[:, 1] = 1.0
    for c, other in ((0, 2), (2, 0)):
        sig = (votes[c] >= min_votes) & (votes[c] > votes[other])
        boost = np.array([CONSENSUS_BOOST.get(int(v), 1.0 + 0.1 * (v - 1)) for v in votes[c]])
        strength = np.minimum(1.0, mass[c] / np.maximum(weight[c], 1e-12) * boost)
        out[sig, c] = strength[sig]
        out[sig, 1] = 1.0 - strength[sig]
    return out
