"""Model registry: ``create_model("prelunet_a", act="relu", init="xavier")``.

One string picks the architecture, one the activation of *every* activation site, one the
initialisation scheme (the style of timm's ``create_model``). Builders register themselves with
:func:`register_model`; they receive ``num_classes``, ``in_chans``, ``act``, ``act_kwargs`` and
their own architecture keywords, and return a model with a ``default_fc_std`` attribute (the
std of the final fc layers under the paper's ``"he"`` recipe, or ``None``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from rectifiers import init as _init
from rectifiers.nn import list_activations

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model builder under ``name`` (must be unique)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def _known_init_schemes() -> list[str]:
    return sorted(_init.list_init_schemes())


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, act: str = "prelu",
                 init: str | None = "he", *, act_kwargs: dict[str, Any] | None = None,
                 init_mode: str | None = None, fc_std: Sequence[float] | None = None,
                 generator: torch.Generator | None = None, data: torch.Tensor | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build a registered model and initialise it.

    Args:
        name: one of :func:`list_models`.
        num_classes: outputs of the last fc layer.
        in_chans: input channels (3 for RGB, 1 for Fashion-MNIST).
        act: activation name from :func:`rectifiers.nn.list_activations`, used at every site
            (after every conv and after fc1/fc2). ``"prelu"`` is channel-wise, as in the paper.
        init: scheme from :func:`rectifiers.init.list_init_schemes`, or ``None`` to keep
            PyTorch's default layer init. ``"he"`` is the paper's recipe: Eq. 14 (``fan_out``)
            on every conv, and on the paper's large models fc stds 0.01/0.01/0.001 (Sec. 3);
            any other scheme applies to every layer.
        act_kwargs: extra keywords for every activation (e.g. ``{"init": 0.1}`` for PReLU).
        init_mode: ``"fan_in"`` (Eq. 10) or ``"fan_out"`` (Eq. 14); default: the scheme's own.
        fc_std: stds of the last ``len(fc_std)`` fc layers, overriding the scheme there (any
            scheme); default: the model's ``default_fc_std`` under ``"he"``, none otherwise.
        generator: RNG for a reproducible init.
        data: a batch for data-dependent schemes (LSUV).
        **kwargs: architecture keywords of the builder (e.g. ``depth``, ``width``).

    Returns:
        The model, with ``model.model_config`` holding the JSON-serialisable arguments needed
        to rebuild it (used by checkpoints).

    Example:
        >>> m = create_model("prelunet_small", num_classes=10, in_chans=1)
        >>> m(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'; known: {', '.join(list_models())}")
    if act not in list_activations():
        raise ValueError(f"unknown activation '{act}'; known: {', '.join(list_activations())}")
    if init is not None and init not in _known_init_schemes():
        raise ValueError(f"unknown init scheme '{init}'; known: {', '.join(_known_init_schemes())}"
                         " (or None for PyTorch's default)")
    if num_classes < 1 or in_chans < 1:
        raise ValueError(f"num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
    builder = _MODELS[name]
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        own = sorted(set(accepted) - {"num_classes", "in_chans", "act", "act_kwargs"})
        raise TypeError(f"model '{name}' got unknown keyword(s) {unknown}; it accepts {own}")
    model = builder(num_classes=num_classes, in_chans=in_chans, act=act,
                    act_kwargs=dict(act_kwargs or {}), **kwargs)
    model.model_config = {
        "name": name, "num_classes": num_classes, "in_chans": in_chans, "act": act,
        "init": init, "act_kwargs": dict(act_kwargs or {}), **kwargs,
    }
    if init is not None:
        initialize_model(model, init, init_mode=init_mode, fc_std=fc_std, generator=generator,
                         data=data)
    return model


def initialize_model(model: nn.Module, init: str, *, init_mode: str | None = None,
                     fc_std: Sequence[float] | None = None,
                     generator: torch.Generator | None = None,
                     data: torch.Tensor | None = None) -> nn.Module:
    """Initialise a built model in place with scheme ``init`` (the second half of
    :func:`create_model`; training builds with ``init=None`` and calls this with a data batch,
    so data-dependent schemes such as ``lsuv`` work; loading a checkpoint never calls it).

    ``"he"`` on a model with ``default_fc_std`` also draws its last fc layers with those stds
    (the paper's recipe); ``fc_std`` overrides that for any scheme.
    """
    if init not in _known_init_schemes():
        raise ValueError(f"unknown init scheme '{init}'; known: {', '.join(_known_init_schemes())}")
    init_kw: dict[str, Any] = {"scheme": init}
    if init_mode is not None:
        init_kw["mode"] = init_mode
    # The model's fixed fc stds are part of the paper's "he" recipe only; an explicit
    # fc_std applies to any scheme (e.g. Xavier convs with the paper's fc layers, Fig. 2/3).
    std = fc_std if fc_std is not None else (
        getattr(model, "default_fc_std", None) if init == "he" else None)
    if std is not None:
        init_kw["fc_std"] = tuple(std)
    _init.initialize(model, generator=generator, data=data, **init_kw)
    config = getattr(model, "model_config", None)
    if isinstance(config, dict):
        config["init"] = init
    return model


def model_description(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint stores to rebuild ``model`` (built by :func:`create_model`):
    ``model``, ``model_kwargs``, ``num_classes``, ``in_chans``, ``act``, ``init``.

    The one description of a model; ``rectifiers.train.checkpoint.build_model_from_meta`` is
    its inverse.
    """
    config = getattr(model, "model_config", None)
    if not isinstance(config, dict):
        raise ValueError(f"{type(model).__name__} was not built by rectifiers.models."
                         "create_model (it has no model_config), so a checkpoint could not "
                         "rebuild it")
    kwargs = dict(config)
    desc = {key: kwargs.pop(key) for key in ("num_classes", "in_chans", "act", "init")}
    desc["model"] = kwargs.pop("name")
    if not kwargs.get("act_kwargs"):
        kwargs.pop("act_kwargs", None)
    desc["model_kwargs"] = kwargs
    return desc
