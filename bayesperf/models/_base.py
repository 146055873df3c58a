"""What every bayesperf model shares: configuration, fitted state, sampling, save and load.

A model's constructor stores configuration only; ``fit`` samples and keeps the
posterior on ``.idata`` (an :class:`xarray.DataTree`); accessors raise
:class:`~bayesperf.errors.NotFittedError` before that. ``save`` writes one ``.nc``
(h5netcdf) or ``.zarr`` file holding the posterior, the data the model was fit on and
its configuration; :func:`load` rebuilds the model from it.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import xarray as xr

from bayesperf._cores import available_cores
from bayesperf.errors import NotFittedError

#: Attribute holding the model's class name in saved files.
MODEL_ATTR = "bayesperf_model"
#: Attribute holding the model's JSON configuration in saved files.
CONFIG_ATTR = "bayesperf_config"

_REGISTRY: dict[str, type[BayesModel]] = {}


class PriorSpec:
    """Mixin of the prior dataclasses: JSON round trip with unknown keys refused."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None) -> Self:
        """Build from a (partial) dict; unknown keys are an error naming the known ones."""
        spec = dict(spec or {})
        known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"unknown prior(s) {unknown}; known: {sorted(known)}")
        return cls(**spec)


class ConvergenceWarning(UserWarning):
    """A fit's diagnostics fail the thresholds (R-hat, ESS, divergences)."""


#: ``pm.sample`` arguments the direct nutpie path (:func:`sample_nutpie`) handles.
_NUTPIE_ARGS = frozenset(
    {
        "draws",
        "tune",
        "chains",
        "cores",
        "target_accept",
        "max_treedepth",
        "progressbar",
        "nuts_sampler",
        "initvals",
        "compile_kwargs",
        "compute_convergence_checks",
    }
)


def sample_nutpie(
    model: Any,
    random_seed: int | None,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    max_treedepth: int | None = None,
    progressbar: bool = True,
    initvals: dict[str, Any] | None = None,
    compile_kwargs: dict[str, Any] | None = None,
    nuts_sampler: str = "nutpie",
    compute_convergence_checks: bool = False,
) -> xr.DataTree:
    """``pm.sample(nuts_sampler="nutpie", ...)`` without its step-method assignment.

    ``pm.sample`` first builds the symbolic gradient of the model for each variable
    to pick step methods (1.6 s for a 1,000-pair latency model), only to hand every
    variable to nutpie. This compiles and samples with nutpie directly and patches
    the result as PyMC does (``constant_data``, ``observed_data``, timing attrs).
    ``nuts_sampler`` must be ``"nutpie"``; ``compute_convergence_checks`` is ignored
    (nutpie computes none; the models run :func:`bayesperf.diagnose`).
    """
    if nuts_sampler != "nutpie":
        raise ValueError(f"sample_nutpie samples with nutpie, not {nuts_sampler!r}")
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    compile_kwargs = dict(compile_kwargs or {})
    if initvals is not None:
        compile_kwargs.setdefault("initial_points", initvals)
    compiled = nutpie.compile_pymc_model(model, **compile_kwargs)
    idata, seconds = _run_nutpie(
        compiled,
        random_seed,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        target_accept=target_accept,
        max_treedepth=max_treedepth,
        progressbar=progressbar,
    )
    patch_nutpie_idata(idata, model, sampling_time=seconds)
    return idata


def _run_nutpie(
    compiled: Any,
    random_seed: int | None,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    max_treedepth: int | None,
    progressbar: bool,
) -> tuple[Any, float]:
    """``nutpie.sample`` of a compiled model with our seed handling: (result, seconds)."""
    import time

    import numpy as np
    import nutpie

    extra = {} if max_treedepth is None else {"maxdepth": max_treedepth}
    start = time.time()
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=max(tune, 1),  # nuts-rs needs at least one tuning step
        chains=chains,
        cores=cores,
        seed=int(np.random.default_rng(random_seed).integers(2**31 - 1)),
        target_accept=target_accept,
        progress_bar=progressbar,
        **extra,
    )
    return idata, time.time() - start


#: Sampler arguments :func:`sample_density` handles.
_DENSITY_ARGS = frozenset(
    {
        "draws",
        "tune",
        "chains",
        "cores",
        "target_accept",
        "max_treedepth",
        "progressbar",
        "nuts_sampler",
        "compute_convergence_checks",
    }
)


@dataclass(frozen=True)
class Density:
    """A model's log density written without PyMC, for nutpie's Python-function interface.

    Attributes
    ----------
    logp_and_grad : callable
        ``x -> (log density, gradient)`` on the unconstrained vector ``x``; it must not
        raise (nutpie calls it from its sampler threads).
    expand : callable
        ``x -> {name: array}``: the values stored in the posterior.
    start : numpy.ndarray
        Where every chain starts (no jitter).
    dims, coords : dict
        Dimension names of each stored variable, and the coordinates of those dims.
    """

    logp_and_grad: Any
    expand: Any
    start: Any
    dims: dict[str, tuple[str, ...]]
    coords: dict[str, Any]


def sample_density(
    density: Density,
    random_seed: int | None,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    max_treedepth: int | None = None,
    progressbar: bool = True,
    nuts_sampler: str = "nutpie",
    compute_convergence_checks: bool = False,
) -> xr.DataTree:
    """Sample a :class:`Density` with nutpie: no per-process compilation.

    The same NUTS (nuts-rs) as :func:`sample_nutpie`, the same seed handling, so a
    density equal to a PyMC model's gives that model's draws; the result carries the
    same timing attrs (``sampling_time``, ``tuning_steps``). ``compute_convergence_checks``
    is ignored, as there.
    """
    if nuts_sampler != "nutpie":
        raise ValueError(f"sample_density samples with nutpie, not {nuts_sampler!r}")

    import numpy as np
    from nutpie.compiled_pyfunc import from_pyfunc

    start_point = np.asarray(density.start, dtype=np.float64)
    values = density.expand(start_point)
    names = list(values)

    def make_logp_fn():
        def logp_fn(x, **_shared):
            logp, grad = density.logp_and_grad(x)
            return float(logp), grad

        return logp_fn

    def make_expand_fn(_seed1, _seed2, _chain):
        return lambda x, **_shared: density.expand(x)

    compiled = from_pyfunc(
        ndim=start_point.size,
        make_logp_fn=make_logp_fn,
        make_expand_fn=make_expand_fn,
        make_initial_point_fn=lambda _seed: start_point.copy(),
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=[np.shape(values[name]) for name in names],
        expanded_names=names,
        dims=density.dims,
        coords=density.coords,
    )
    idata, seconds = _run_nutpie(
        compiled,
        random_seed,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        target_accept=target_accept,
        max_treedepth=max_treedepth,
        progressbar=progressbar,
    )
    idata.posterior.attrs["sampling_time"] = seconds
    idata.posterior.attrs["tuning_steps"] = max(tune, 1)
    return idata


class BayesModel:
    """Base class: configuration, fitted posterior, persistence."""

    #: Default sampler settings; ``fit(**sample_kwargs)`` overrides them.
    sample_defaults: ClassVar[dict[str, Any]] = {
        "draws": 1000,
        "tune": 1000,
        "chains": 4,
        "cores": available_cores(),
        "nuts_sampler": "nutpie",
        "target_accept": 0.98,
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    _idata: xr.DataTree | None = None

    def _sampler_settings(self, sample_kwargs: dict[str, Any], **defaults: Any) -> dict[str, Any]:
        """:attr:`sample_defaults`, then a model's ``defaults``, then the user's kwargs."""
        return {**self.sample_defaults, **defaults, **sample_kwargs}

    @staticmethod
    def _density_samples(settings: dict[str, Any]) -> bool:
        """Whether :func:`sample_density` can sample with these settings (nutpie, its args)."""
        return settings.get("nuts_sampler") == "nutpie" and set(settings) <= _DENSITY_ARGS

    def _sample(
        self, model: Any, random_seed: int | None, sample_kwargs: dict[str, Any], **defaults: Any
    ) -> xr.DataTree:
        """Sample ``model``: :attr:`sample_defaults`, then ``defaults``, then the user's kwargs.

        nutpie runs directly (:func:`sample_nutpie`) unless the arguments ask for
        something only :func:`pymc.sample` does; then ``pm.sample`` gets them all.
        """
        kwargs = self._sampler_settings(sample_kwargs, **defaults)
        if kwargs.get("nuts_sampler") == "nutpie" and set(kwargs) <= _NUTPIE_ARGS:
            return sample_nutpie(model, random_seed, **kwargs)
        import pymc as pm

        with model:
            return pm.sample(random_seed=random_seed, **kwargs)

    @property
    def idata(self) -> xr.DataTree:
        """The posterior and everything stored with it (ArviZ 1.x ``DataTree``)."""
        if self._idata is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call .fit(data) first")
        return self._idata

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run (or the model was loaded)."""
        return self._idata is not None

    #: What usually helps when a fit fails its convergence checks (for the warning).
    convergence_hint: ClassVar[str] = "more draws, or a higher target_accept, usually help"

    def _check_convergence(self) -> None:
        """Warn (:class:`ConvergenceWarning`) naming every block that fails diagnose()."""
        from bayesperf.diagnostics import diagnose

        table = diagnose(self)
        failed = table[~table["ok"]]
        if len(failed):
            warnings.warn(
                f"{self!r} fit fails convergence checks for {', '.join(failed.index)}: "
                f"run bayesperf.diagnose(model) for details ({self.convergence_hint})",
                ConvergenceWarning,
                stacklevel=3,
            )

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable configuration (the constructor's arguments)."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write posterior, fit data and configuration to ``path`` (``.nc`` or ``.zarr``).

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        tree = self.idata.copy()
        tree.attrs[MODEL_ATTR] = type(self).__name__
        tree.attrs[CONFIG_ATTR] = json.dumps(self.get_config())
        if path.suffix == ".zarr":
            with warnings.catch_warnings():
                # zarr 3 warns that consolidated metadata is not in its spec yet.
                warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                tree.to_zarr(path, mode="w")
        elif path.suffix in (".nc", ".h5", ".netcdf"):
            tree.to_netcdf(path, engine="h5netcdf")
        else:
            raise ValueError(f"cannot save to {path}: use a .nc or .zarr path")
        return path

    @classmethod
    def _from_idata(cls, idata: xr.DataTree, config: dict[str, Any]) -> BayesModel:
        model = cls(**config)
        model._idata = idata
        return model


def load(path: str | os.PathLike[str]) -> BayesModel:
    """Rebuild a model saved with ``model.save(path)``.

    Examples
    --------
    >>> model = bayesperf.load("latency.nc")  # doctest: +SKIP
    >>> model.summary()                        # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}")
    engine = "zarr" if path.suffix == ".zarr" else "h5netcdf"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        tree = xr.open_datatree(path, engine=engine).load()
    name = tree.attrs.pop(MODEL_ATTR, None)
    config = tree.attrs.pop(CONFIG_ATTR, None)
    if name is None or config is None:
        raise ValueError(f"{path} was not written by a bayesperf model's save()")
    if name not in _REGISTRY:
        raise ValueError(f"{path} holds an unknown model type {name!r}")
    return _REGISTRY[name]._from_idata(tree, json.loads(config))
