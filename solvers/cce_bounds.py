"""Theorem 5 and Theorem 6 bounds (Section 5), with the constants derived from Appendix E.

Notation: KL of best responses in hindsight pi^{tau,dag}_{h,i} against the initial policies
pi_tilde^tau_{h,i}(.|s); "rewards in [0, 1]" is the paper's standing assumption (Section 2), used
by Lemma 18 (0 <= Q <= H). Derivation (Appendix E.2-E.3, any learning rate eta > 0):

* Lemma 18 (Pinsker, and KL(pi_hat^t || pi^t) <= eta H since 0 <= g <= H):
  ||pi^t_i - pi^{t-1}_i||_1^2 <= 18 eta H, hence ||pi^t_{-i} - pi^{t-1}_{-i}||_1^2 <= 18 (N-1)^2 eta H.
* Lemma 17 (optimistic OMD, Rakhlin-Sridharan; ||Q||_inf <= H, Hoelder):
  reg^tau_{h,i}(s) <= KL(pi^{tau,dag}_{h,i} || pi_tilde^tau_{h,i}(.|s)) / (eta L_tau) + 2 eta H^2 * 18 (N-1)^2 eta H
                   = KL / (eta L_tau) + 36 (N-1)^2 eta^2 H^3.
* Lemma 19 (recursion over h, 1/L_{tau-h'+h-1} <= (1 + 1/H)^{h'-h+1} / L_tau <= e / L_tau <= 3 / L_tau):
  delta^tau_h <= sum_{h'=h}^H (3 / (eta L_tau)) max_{i,s} KL_{tau-h'+h-1, h'} + 36 (N-1)^2 eta^2 H^4.
* Theorem 5, first form (E.2: CCE-gap <= (1/T) sum_t delta^{tau(t)}_1, each (tau, h) counted once):

      CCE-gap <= (3 / (eta T)) sum_{tau=1}^{tau_bar} sum_{h=1}^H max_{s,i} KL(pi^{tau,dag}_{h,i} || pi_tilde^tau_{h,i}(.|s)) + 36 (N-1)^2 eta^2 H^4.

  What this bounds is (1/T) sum_t max_i [V^{dag,t}_i - V^t_i], the expected CCE-gap of Algorithm 3's
  output (``solvers.cce``, label ``algorithm3``).
* Uniform initialisation: KL(pure || uniform) <= log A_max, so the sum is <= H tau_bar log A_max
  (``uniform_form``, from the run's tau_bar); with tau_bar <= 4 H log T (Eq. 62):
  CCE-gap <= 12 H^2 log T log A_max / (eta T) + 36 (N-1)^2 eta^2 H^4 (``rate_form``). At Theorem 5's
  eta = H^{-2/3} T^{-1/3} (N-1)^{-2/3} both terms scale as (N-1)^{2/3} H^{8/3} / T^{2/3}:
  (12 log T log A_max + 36) (N-1)^{2/3} H^{8/3} / T^{2/3}. (The OCR of the paper's display (11) is
  unreadable beyond its T^{-2/3} rate; this is the value of its own second-to-last display.)

Theorem 6 (E.4). With KL of two collections = sum_h sum_tau sum_i max_s KL (E.4's definition, >= the
max over i of Theorem 5, so Theorem 5 applies with it), Lemma 1 and the FTL regret of Lemma 2 per
player (as for Theorem 2, with A_i per player):

      (1/K) sum_k CCE-gap_k <= (3 / (eta T)) [ Delta_pi / K + 8 (sum_i A_i)(1 + ln K) / (alpha K)
                                              + 4 H tau_bar alpha sum_i ln(A_i / alpha) ] + 36 (N-1)^2 eta^2 H^4

(``intermediate``, from the run's tau_bar and alpha), where Delta_pi = sum_k sum_i KL(pi^{k,dag}_i || pi^*_i).
Substituting alpha = 1/sqrt(K) and tau_bar <= 4 H log T gives ``substituted``:
(3/(eta T)) [Delta_pi/K + 8 (sum_i A_i)(1 + ln K)/sqrt(K) + 16 H^2 log T sum_i ln(A_i sqrt(K))/sqrt(K)] + 36 (N-1)^2 eta^2 H^4.
The paper's display replaces sum_i A_i by N A_max and uses eta = K^{-1/6} H^{-2/3} T^{-1/3} N^{-2/3};
our forms take the run's eta.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["Theorem5Bound", "Theorem6Bound", "theorem5_bound", "theorem6_bound", "deviation_term"]


def deviation_term(H: int, N: int, eta: float) -> float:
    """36 (N-1)^2 eta^2 H^4: the stability (optimism) term of Theorems 5 and 6."""
    return 36.0 * (N - 1) ** 2 * eta**2 * H**4


@dataclass(frozen=True)
class Theorem5Bound:
    """Theorem 5 bounds on the expected CCE-gap of Algorithm 3's output, with their conditions.

    ``kl_form``: (3/(eta T)) kl_sum + 36 (N-1)^2 eta^2 H^4 (kl_sum = sum_tau sum_h max_{s,i} KL, actual init).
    ``uniform_form``: (3/(eta T)) H tau_bar log A_max + ..., the KL form's worst case under uniform init.
    ``rate_form``: 12 H^2 log T log A_max/(eta T) + ... (tau_bar <= 4 H log T substituted).
    Flags: ``rewards_ok`` (rewards in [0, 1], used by Lemma 18), ``reset_ok`` (stage reset, the algorithm
    analysed), ``stages_ok`` (tau_bar <= 4 H log T, used by ``rate_form``), ``eta_is_default``
    (eta = H^{-2/3} T^{-1/3} (N-1)^{-2/3}, the rate statement's choice; the first form holds for any eta).
    """

    kl_form: float
    uniform_form: float
    rate_form: float
    kl_sum: float
    deviation: float
    rewards_ok: bool
    reset_ok: bool
    stages_ok: bool
    eta_is_default: bool

    @property
    def conditions_hold(self) -> bool:
        return self.rewards_ok and self.reset_ok

    def as_dict(self) -> dict:
        return asdict(self) | {"conditions_hold": self.conditions_hold}


def theorem5_bound(H: int, T: int, eta: float, N: int, A_max: int, num_stages: int, kl_sum: float,
                   stage_reset: bool = True, rewards_ok: bool = True) -> Theorem5Bound:
    """Theorem 5 bounds (module docstring) from a run's tau_bar = ``num_stages`` and KL sum."""
    c = 3.0 / (eta * T)
    dev = deviation_term(H, N, eta)
    from .algorithm2 import default_eta

    return Theorem5Bound(
        kl_form=c * kl_sum + dev,
        uniform_form=c * H * num_stages * math.log(A_max) + dev,
        rate_form=12.0 * H**2 * math.log(T) * math.log(A_max) / (eta * T) + dev,
        kl_sum=float(kl_sum),
        deviation=dev,
        rewards_ok=bool(rewards_ok),
        reset_ok=bool(stage_reset),
        stages_ok=bool(num_stages <= 4.0 * H * math.log(T)),
        eta_is_default=bool(math.isclose(eta, default_eta(H, T, N), rel_tol=1e-12)),
    )


@dataclass(frozen=True)
class Theorem6Bound:
    """Theorem 6 bounds on (1/K) sum_k of the expected CCE-gaps of the meta-learning run.

    ``intermediate`` and ``substituted`` as in the module docstring. Flags: ``alpha_ok`` (alpha in (0, 1/2)),
    ``alpha_is_default`` (alpha = 1/sqrt K, used by ``substituted``), ``stages_ok``, ``reset_ok``, ``rewards_ok``.
    """

    intermediate: float
    substituted: float
    delta: float
    alpha_ok: bool
    alpha_is_default: bool
    stages_ok: bool
    reset_ok: bool
    rewards_ok: bool

    @property
    def conditions_hold(self) -> bool:
        return self.alpha_ok and self.reset_ok and self.rewards_ok

    def as_dict(self) -> dict:
        return asdict(self) | {"conditions_hold": self.conditions_hold}


def theorem6_bound(H: int, T: int, eta: float, K: int, actions, alpha: float, num_stages: int, delta: float,
                   stage_reset: bool = True, rewards_ok: bool = True) -> Theorem6Bound:
    """Theorem 6 bounds (module docstring); ``actions`` = (A_1, ..., A_N), ``delta`` = Delta_pi."""
    N = len(actions)
    c = 3.0 / (eta * T)
    dev = deviation_term(H, N, eta)
    lnK = math.log(K)
    sum_a = float(sum(actions))
    intermediate = c * (delta / K + 8.0 * sum_a * (1.0 + lnK) / (alpha * K)
                        + 4.0 * H * num_stages * alpha * sum(math.log(a / alpha) for a in actions)) + dev
    sk = math.sqrt(K)
    substituted = c * (delta / K + 8.0 * sum_a * (1.0 + lnK) / sk
                       + 16.0 * H**2 * math.log(T) * sum(math.log(a * sk) for a in actions) / sk) + dev
    return Theorem6Bound(
        intermediate=intermediate,
        substituted=substituted,
        delta=float(delta),
        alpha_ok=bool(0.0 < alpha < 0.5),
        alpha_is_default=bool(math.isclose(alpha, 1.0 / sk, rel_tol=1e-12)),
        stages_ok=bool(num_stages <= 4.0 * H * math.log(T)),
        reset_ok=bool(stage_reset),
        rewards_ok=bool(rewards_ok),
    )
