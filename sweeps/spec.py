"""Sweep specs: a YAML file, validated into a typed :class:`SweepSpec` before anything starts.

A bad spec raises :class:`SpecError` naming the problem (the key path and the value); no Ray is
started and no MLflow run is created. Example (``sweeps/specs/paper-fig2.yaml``)::

    experiment: paper-fig2
    algorithm: optimistic-mwu          # Algorithm 1 (zero-sum)
    game: {family: paper-zero-sum}
    methods: [individual, meta]
    search_space:
      eta: 0.02
      K: 10
      H: 10
      sigma: 0.1
      T: 1000
      seed: {grid: [0, 1, 2, 3, 4]}
      stage_reset: {grid: [true, false]}

Search-space values are a constant or one of ``{grid: [...]}``, ``{choice: [...]}``,
``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{randint: [lo, hi]}`` (hi exclusive), Ray
Tune's primitives of the same names.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace

import yaml
import yaml.constructor

from .registry import ALGORITHMS, FAMILIES, Param, is_int as _int, is_num as _num

__all__ = ["SpecError", "SweepSpec", "ParamSpec", "load_spec", "parse_spec", "check_grid_limit", "read_yaml", "PARAMS",
           "ALGORITHMS"]

METHODS = ("individual", "meta")
SEARCH_ALGORITHMS = ("variant", "optuna")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
#: Grids with more points than this need ``confirm_large_grid: true`` (or ``--yes``).
GRID_LIMIT = 2000
#: The parameters of the default algorithm (Algorithm 1); every algorithm's are in :mod:`sweeps.registry`.
PARAMS: dict[str, Param] = ALGORITHMS["optimistic-mwu"].params


class SpecError(ValueError):
    """A sweep spec is invalid; the message names the key and the problem."""


@dataclass(frozen=True)
class ParamSpec:
    """One search-space entry: ``kind`` is "const" or a distribution name; ``values`` its arguments."""

    name: str
    kind: str
    values: tuple

    @property
    def grid_size(self) -> int:
        return len(self.values) if self.kind == "grid" else 1

    def to_tune(self):
        from ray import tune

        if self.kind == "const":
            return self.values[0]
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        return tune.randint(*self.values)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec. Every field is documented in ``docs/sweep-spec.md``."""

    experiment: str
    algorithm: str
    family: str
    states: int
    actions: tuple[int, ...]
    methods: tuple[str, ...]
    params: dict[str, ParamSpec]
    num_samples: int = 1
    search: str = "variant"
    cpus_per_trial: float = 1.0
    max_concurrent_trials: int | None = None
    max_failures: int = 2
    eval_every: int | None = None
    metric_history_points: int = 50
    tracking_overlap: bool | str = "auto"  # tracking.overlap: true, false or "auto" (sweeps.service.overlap_for)
    epsilon: float = 0.1
    tracking_uri: str | None = None
    ray_address: str | None = None
    confirm_large_grid: bool = False
    stopper: dict | None = None
    game_options: dict = field(default_factory=dict)  # the family's game keys, defaults filled in
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def grid_size(self) -> int:
        return math.prod(p.grid_size for p in self.params.values())

    @property
    def num_trials(self) -> int:
        return self.grid_size * self.num_samples

    def param_space(self) -> dict:
        """Ray Tune param_space (the same names as the spec and as MLflow params)."""
        return {name: p.to_tune() for name, p in self.params.items()}

    def smoke(self) -> "SweepSpec":
        """A seconds-sized version (``--smoke-test``): K <= 3, T <= 100, H <= 3 (MAML: outer_iterations <= 3, held_out
        <= 2), grids cut to 2 points, 1 sample."""
        caps = {"K": 3, "T": 100, "H": 3, "outer_iterations": 3, "held_out": 2}
        params = {}
        for name, p in self.params.items():
            vals = p.values
            if p.kind in ("grid", "choice"):
                vals = tuple(dict.fromkeys(min(v, caps[name]) if name in caps else v for v in vals))[:2]
            elif p.kind == "const" and name in caps:
                vals = (min(vals[0], caps[name]),)
            elif p.kind in ("uniform", "loguniform", "randint") and name in caps:
                vals = (min(vals[0], caps[name] - 1), min(vals[1], caps[name]))
            params[name] = ParamSpec(name, p.kind, tuple(vals))
        return replace(self, experiment=self.experiment + "-smoke", params=params, num_samples=1)


def _err(path: str, msg: str) -> SpecError:
    return SpecError(f"{path}: {msg}")


def _check_keys(obj, allowed, path):
    if not isinstance(obj, dict):
        raise _err(path, f"must be a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed), key=str)
    if unknown:
        raise _err(path, f"unknown key '{unknown[0]}' (allowed: {', '.join(allowed)})")


def _parse_param(name: str, p: Param, raw) -> ParamSpec:
    path = f"search_space.{name}"
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise _err(path, f"a distribution is a mapping with exactly one of {', '.join(DISTRIBUTIONS)}")
        kind, args = next(iter(raw.items()))
        if kind not in DISTRIBUTIONS:
            raise _err(path, f"unknown distribution '{kind}' (choose from {', '.join(DISTRIBUTIONS)})")
        if not isinstance(args, list) or not args:
            raise _err(path, f"{kind} needs a non-empty list, got {args!r}")
        if kind in ("grid", "choice"):
            for v in args:
                if not p.check(v):
                    raise _err(path, f"value {v!r} in {kind} must be {p.requirement}")
            if len(set(map(repr, args))) != len(args):
                raise _err(path, f"{kind} has repeated values: {args}")
            return ParamSpec(name, kind, tuple(args))
        applies = ("int",) if kind == "randint" else ("float", "alpha")
        if p.kind not in applies:
            raise _err(path, f"{kind} does not apply to {name} (a {p.kind} parameter); use grid or choice")
        if len(args) != 2 or not all(_num(v) for v in args) or not args[0] < args[1]:
            raise _err(path, f"{kind} needs [lo, hi] with lo < hi, got {args!r}")
        lo, hi = args
        if kind == "randint" and not (_int(lo) and _int(hi)):
            raise _err(path, f"randint needs integers, got {args!r}")
        # hi is exclusive for randint and (in practice) never drawn for alpha's open interval
        top_ok = p.check(hi - 1) if kind == "randint" else (hi <= 0.5 if p.kind == "alpha" else p.check(hi))
        if not (p.check(lo) and top_ok):
            raise _err(path, f"{kind} range [{lo}, {hi}] must stay within {p.requirement}")
        if kind == "loguniform" and lo <= 0:
            raise _err(path, f"loguniform needs lo > 0, got {lo}")
        return ParamSpec(name, kind, (lo, hi))
    if not p.check(raw):
        raise _err(path, f"must be {p.requirement}, got {raw!r}")
    return ParamSpec(name, "const", (raw,))


def parse_spec(raw: dict, source: str = "spec", enforce_limit: bool = True) -> SweepSpec:
    """Validate a parsed YAML mapping into a :class:`SweepSpec` (errors name ``source`` and the key).

    ``enforce_limit=False`` leaves the grid-size check to :func:`check_grid_limit`, for callers that
    shrink the spec (``--smoke-test``) or confirm it (``--yes``) first.
    """
    try:
        spec = _parse(raw)
        if enforce_limit:
            check_grid_limit(spec)
        return spec
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def check_grid_limit(spec: SweepSpec) -> None:
    if spec.num_trials > GRID_LIMIT and not spec.confirm_large_grid:
        raise _err("search_space", f"{spec.num_trials} trials exceed the limit of {GRID_LIMIT}; "
                   "set confirm_large_grid: true (or pass --yes) to run them")


def _parse(raw) -> SweepSpec:
    top = ("experiment", "algorithm", "game", "methods", "search_space", "num_samples", "search", "resources",
           "max_concurrent_trials", "max_failures", "eval_every", "tracking", "ray_address", "confirm_large_grid", "epsilon",
           "stopper", "allow_absolute_paths")
    if raw is None:
        raise _err("spec", "the file is empty")
    _check_keys(raw, top, "spec")
    exp = raw.get("experiment")
    if not isinstance(exp, str) or not exp.strip() or len(exp) > 200 or any(c in exp for c in "/\\\n"):
        raise _err("experiment", f"must be a non-empty name without slashes, got {exp!r}")
    algorithm = raw.get("algorithm", "optimistic-mwu")
    if algorithm not in ALGORITHMS:
        raise _err("algorithm", f"unknown algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})")
    alg = ALGORITHMS[algorithm]

    game = raw.get("game", {"family": alg.families[0]})
    if not isinstance(game, dict):
        raise _err("game", f"must be a mapping, got {type(game).__name__}")
    family = game.get("family")
    if family not in alg.families:
        raise _err("game.family", f"unknown family {family!r} for algorithm {algorithm} (choose from {', '.join(alg.families)})")
    fam = FAMILIES[family]
    if family == "paper-zero-sum" and ("states" in game or "actions" in game):
        raise _err("game", "states and actions are fixed by the paper-zero-sum family (S=2, A=B=2)")
    _check_keys(game, ("family", *fam.game_keys), "game")
    missing = [k for k, p in fam.game_keys.items() if p.required and k not in game]
    if missing:
        raise _err(f"game.{missing[0]}", f"is required by family {family}")
    for key, p in fam.game_keys.items():
        if key in game and not p.check(game[key]):
            raise _err(f"game.{key}", f"must be {p.requirement}, got {game[key]!r}")
    game_options = fam.options(game)
    states = game_options.get("states", 2)
    actions = game_options.get("actions", [2, 2])

    methods = raw.get("methods", list(METHODS))
    if not isinstance(methods, list) or not methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
        raise _err("methods", f"must be a non-empty list of distinct entries from {list(METHODS)}, got {methods!r}")

    space = raw.get("search_space")
    if space is None or space == {}:
        needed = ", ".join(n for n, p in alg.params.items() if p.required)
        raise _err("search_space", f"is empty: give at least {needed}")
    _check_keys(space, tuple(alg.params), "search_space")
    params = {}
    for name, p in alg.params.items():
        if name in space:
            params[name] = _parse_param(name, p, space[name])
        elif p.required:
            raise _err(f"search_space.{name}", "is required")
        else:
            params[name] = ParamSpec(name, "const", (p.default,))

    for name, value in fam.fixed_params:  # e.g. markov-shapley has N = 2: players may be null or 2 only
        ps = params.get(name)
        if ps is not None and (ps.kind not in ("const", "grid", "choice") or any(v not in (None, value) for v in ps.values)):
            raise _err(f"search_space.{name}", f"family {family} fixes {name} = {value}: give null or {value}")

    num_samples = raw.get("num_samples", 1)
    if not _int(num_samples) or not 1 <= num_samples <= 100_000:
        raise _err("num_samples", f"must be an integer in [1, 100000], got {num_samples!r}")
    search = raw.get("search", "variant")
    if search not in SEARCH_ALGORITHMS:
        raise _err("search", f"must be one of {', '.join(SEARCH_ALGORITHMS)}, got {search!r}")
    if search == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise _err("search", "optuna is not installed: .venv/bin/pip install -e '.[optuna]'") from None

    if search == "optuna":
        grids = [n for n, p in params.items() if p.kind == "grid"]
        if grids:
            raise _err(f"search_space.{grids[0]}", "grid cannot be used with search: optuna (Tune refuses it); "
                       "use choice or a distribution and num_samples")

    resources = raw.get("resources", {})
    _check_keys(resources, ("cpus",), "resources")
    cpus = resources.get("cpus", 1)
    if not _num(cpus) or not 0 < cpus <= 1024:
        raise _err("resources.cpus", f"must be a number in (0, 1024], got {cpus!r}")
    mct = raw.get("max_concurrent_trials")
    if mct is not None and (not _int(mct) or mct < 1):
        raise _err("max_concurrent_trials", f"must be null or an integer >= 1, got {mct!r}")
    mf = raw.get("max_failures", 2)
    if not _int(mf) or not 0 <= mf <= 100:
        raise _err("max_failures", f"must be an integer in [0, 100], got {mf!r}")
    ev = raw.get("eval_every")
    if ev is not None and (not _int(ev) or ev < 1):
        raise _err("eval_every", f"must be null (every iteration) or an integer >= 1, got {ev!r}")
    eps = raw.get("epsilon", 0.1)
    if not _num(eps) or not eps > 0:
        raise _err("epsilon", f"must be a number > 0 (the gap level of iterations-to-epsilon), got {eps!r}")

    tracking = raw.get("tracking", {})
    _check_keys(tracking, ("uri", "metric_history_points", "overlap"), "tracking")
    uri = tracking.get("uri")
    allow_abs = raw.get("allow_absolute_paths", False)
    if not isinstance(allow_abs, bool):
        raise _err("allow_absolute_paths", f"must be true or false, got {allow_abs!r}")
    if uri is not None:
        _check_tracking_uri(uri, allow_abs)
    mhp = tracking.get("metric_history_points", 50)
    if not _int(mhp) or not 2 <= mhp <= 1_000_000:
        raise _err("tracking.metric_history_points", f"must be an integer in [2, 1e6], got {mhp!r}")
    overlap = tracking.get("overlap", "auto")
    if not isinstance(overlap, bool) and overlap != "auto":
        raise _err("tracking.overlap", f"must be true, false or auto, got {overlap!r}")
    address = raw.get("ray_address")
    if address is not None and (not isinstance(address, str) or not address):
        raise _err("ray_address", f"must be null, 'auto', 'host:port' or 'ray://host:port', got {address!r}")
    confirm = raw.get("confirm_large_grid", False)
    if not isinstance(confirm, bool):
        raise _err("confirm_large_grid", f"must be true or false, got {confirm!r}")

    stopper = _parse_stopper(raw.get("stopper"), methods)

    spec = SweepSpec(
        experiment=exp, algorithm=algorithm, family=family, states=states, actions=tuple(actions), game_options=game_options,
        methods=tuple(methods), params=params, num_samples=num_samples, search=search, cpus_per_trial=float(cpus),
        max_concurrent_trials=mct, max_failures=mf, eval_every=ev, metric_history_points=mhp, tracking_overlap=overlap, epsilon=float(eps),
        tracking_uri=uri, ray_address=address, confirm_large_grid=confirm, stopper=stopper, raw=raw,
    )
    return spec


#: Metrics a stopper can watch (each trial reports them to Tune once) and the direction that is better.
STOPPER_METRICS = {"final_gap/meta": "min", "final_gap/individual": "min", "speedup/final_gap": "max",
                   "similarity/delta/meta": "min"}


def _parse_stopper(raw, methods) -> dict | None:
    """``stopper: {metric, std, top, patience}``: Tune's ExperimentPlateauStopper (stop the sweep once the
    ``top`` best values of ``metric`` have a standard deviation <= ``std`` for ``patience`` more results)."""
    if raw is None:
        return None
    _check_keys(raw, ("metric", "std", "top", "patience"), "stopper")
    metric = raw.get("metric", "final_gap/meta")
    if metric not in STOPPER_METRICS:
        raise _err("stopper.metric", f"must be one of {', '.join(STOPPER_METRICS)}, got {metric!r}")
    needed = {"final_gap/meta": "meta", "final_gap/individual": "individual", "similarity/delta/meta": "meta"}.get(metric)
    if needed and needed not in methods or metric == "speedup/final_gap" and len(methods) < 2:
        raise _err("stopper.metric", f"{metric} is not reported when methods are {list(methods)}")
    std = raw.get("std", 1e-3)
    if not _num(std) or not std > 0:
        raise _err("stopper.std", f"must be a number > 0, got {std!r}")
    top = raw.get("top", 10)
    if not _int(top) or top < 2:
        raise _err("stopper.top", f"must be an integer >= 2, got {top!r}")
    patience = raw.get("patience", 0)
    if not _int(patience) or patience < 0:
        raise _err("stopper.patience", f"must be an integer >= 0, got {patience!r}")
    return {"metric": metric, "std": float(std), "top": top, "patience": patience, "mode": STOPPER_METRICS[metric]}


def _check_tracking_uri(uri, allow_absolute: bool = False) -> None:
    """A spec's local store path stays below the working directory unless ``allow_absolute_paths: true``
    (a shared spec cannot make a sweep write elsewhere on the machine)."""
    if not isinstance(uri, str) or not uri:
        raise _err("tracking.uri", f"must be a string, got {uri!r}")
    local = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else uri[len("file://"):] if uri.startswith("file://") \
        else None if "://" in uri else uri
    if local is not None and not allow_absolute:
        norm = os.path.normpath(local)
        if os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
            raise _err("tracking.uri", f"{uri!r} points outside the working directory; use a relative path below it "
                       "or set allow_absolute_paths: true")
    schemes = ("http://", "https://", "sqlite:///", "postgresql://", "postgresql+psycopg://", "file://", "databricks")
    if "://" in uri and not uri.startswith(schemes):
        raise _err("tracking.uri", f"unsupported scheme in {uri!r} (use http(s)://, sqlite:///, postgresql:// or a path)")


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus: ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``), and a key given
    twice in one mapping is an error instead of the last one silently winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def read_yaml(text: str, source: str = "spec"):
    """Parse YAML text with the spec loader (safe: no Python objects are ever constructed)."""
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - _SpecLoader derives from SafeLoader
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None


def load_spec(path, enforce_limit: bool = True) -> SweepSpec:
    """Read a YAML spec (safe loader) and validate it (see :func:`parse_spec`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SpecError(f"spec file not found: {path}")
    try:
        with open(path) as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file") from None
    return parse_spec(read_yaml(text, path), path, enforce_limit)
