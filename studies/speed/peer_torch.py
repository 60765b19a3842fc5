"""PyTorch eager in a worker process: ``nn.Sequential`` + ``torch.optim.SGD`` for single
networks, ``torch.func.vmap`` of ``grad_and_value`` over stacked parameters for populations.

``torch.set_num_threads`` is set to the number of cores. Weights are the shared Glorot
initialisation (``W.T`` into ``nn.Linear.weight``); batches are the shared orders gathered with
``X[idx]``, as an eager training loop without a ``DataLoader`` does.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .common import epoch_order, glorot_init, net_config


def setup_threads():
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(cores)
    return {"torch_threads": torch.get_num_threads(), "version": torch.__version__}


def _loss_fn(net):
    import torch.nn.functional as F

    if net_config(net)["sizes"][-1] > 1:
        return F.cross_entropy
    return lambda z, y: F.binary_cross_entropy_with_logits(z.view(-1), y)


class Single:
    def __init__(self, net, X, y):
        import torch
        from torch import nn

        cfg = net_config(net)
        sizes = cfg["sizes"]
        act = nn.ReLU if cfg["activation"] == "relu" else nn.Tanh
        layers = []
        for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if l < len(sizes) - 2:
                layers.append(act())
        self.model = nn.Sequential(*layers)
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        self.init = glorot_init(sizes, 0)
        self.loss = _loss_fn(net)
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg["lr"])

    def reset(self):
        import torch

        with torch.no_grad():
            for lin, (W, b) in zip(self.linears, self.init, strict=True):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                lin.bias.copy_(torch.from_numpy(b))

    def epoch(self, batch, n, seed, want_loss):
        import torch

        t0 = time.perf_counter()
        order = torch.from_numpy(epoch_order(n, seed))
        model, opt, loss_fn, X, y = self.model, self.opt, self.loss, self.X, self.y
        total = torch.zeros(()) if want_loss else None
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            if want_loss:
                total += loss.detach()
        seconds = time.perf_counter() - t0
        return seconds, (float(total) * batch / n if want_loss else None)


class Population:
    """K networks (seeds 0..K-1) as stacked tensors, one vmapped gradient per step."""

    def __init__(self, net, K, X, y):
        import torch
        from torch.func import grad_and_value, vmap

        cfg = net_config(net)
        layers = [glorot_init(cfg["sizes"], k) for k in range(K)]
        self.init = []
        for l in range(len(cfg["sizes"]) - 1):
            self.init.append(torch.from_numpy(np.stack([lay[l][0] for lay in layers])))
            self.init.append(torch.from_numpy(np.stack([lay[l][1] for lay in layers])))
        act = torch.relu if cfg["activation"] == "relu" else torch.tanh
        loss_fn = _loss_fn(net)

        def loss(params, xb, yb):
            h = xb
            L = len(params) // 2
            for l in range(L):
                h = h @ params[2 * l] + params[2 * l + 1]
                if l < L - 1:
                    h = act(h)
            return loss_fn(h, yb)

        self.grad = vmap(grad_and_value(loss), in_dims=(0, None, None))
        self.lr = cfg["lr"]
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)
        self.params = None

    def epoch(self, batch, n, seed, want_loss):
        import torch

        if want_loss or self.params is None:
            self.params = tuple(p.clone() for p in self.init)
        t0 = time.perf_counter()
        order = torch.from_numpy(epoch_order(n, seed))
        params, X, y, lr = self.params, self.X, self.y, self.lr
        total = None
        with torch.no_grad():
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                grads, loss = self.grad(params, X[idx], y[idx])
                for p, g in zip(params, grads, strict=True):
                    p.sub_(g, alpha=lr)
                if want_loss:
                    total = loss.mean() if total is None else total + loss.mean()
        seconds = time.perf_counter() - t0
        return seconds, (float(total) * batch / n if want_loss else None)
