"""Theorem 1 and Theorem 2 bounds (Section 3), with the constants derived from Appendix B.

Derivation of the constants for a general learning rate eta <= 1/(8 H^2) (Appendix B.1):

* Lemma 7:  NE-gap(mu_bar, nu_bar) <= (2/T) sum_h sum_tau L_tau max_s (reg^tau_{h,1}(s) + reg^tau_{h,2}(s))
  + (2/T) sum_h sum_tau L_tau delta^tau_h.
* Lemma 8 (optimistic OMD, eta <= 1/(8H^2), negative terms dropped):
  L_tau (reg^tau_{h,1}(s) + reg^tau_{h,2}(s)) <= (1/eta) [KL(mu^{tau,dag}_h || mu_tilde^tau_h(.|s)) + KL(nu^{tau,dag}_h || nu_tilde^tau_h(.|s))],
  so the first term is at most (2/(eta T)) sum_h sum_tau max_s [KL + KL]  (= 16 H^2/T ... at eta = 1/(8H^2)).
* Lemma 9 with (1 + 1/H)^{2H} <= e^2:  L_tau delta^tau_h <= (12/eta) sum_{h'=h+1}^H max_s [KL + KL]_{tau-h'+h, h'},
  so the second term is at most (24/(eta T)) sum_h sum_tau sum_{h'>h} max_s [...] (= 192 H^2/T ... at eta = 1/(8H^2)).
* Absorbing the first term as the h' = h summand (2 <= 24) and counting each (tau, h') pair at most H
  times when switching the order of summation (Eq. 15):

      NE-gap(mu_bar, nu_bar) <= (24 H / (eta T)) sum_{h=1}^H sum_{tau=1}^{tau_bar} max_s [KL(mu^{tau,dag}_h || mu_tilde^tau_h(.|s)) + KL(nu^{tau,dag}_h || nu_tilde^tau_h(.|s))]

  which is Theorem 1's 192 H^3 / T form at eta = 1/(8 H^2). The bound grows like 1/eta as eta -> 0,
  as it must (with eta -> 0 nothing moves).
* Uniform initialisation: KL(pure || uniform) = log A, so the sum is at most H tau_bar log(AB); with
  tau_bar <= 4 H log T (Eq. 17) this gives 96 H^3 log T log(AB) / (eta T), i.e. Eq. (4)'s
  768 H^5 log T log(AB) / T at eta = 1/(8 H^2).

Theorem 2 (Appendix B.3). Writing KL(x || y) of two collections for sum_h sum_tau max_s KL, the proof
gives, per player, (1/K) sum_k KL(mu^{k,dag} || mu_tilde^k) <= (1/K) sum_k KL(mu^{k,dag} || mu^*)
+ 8 A (1 + ln K) / (alpha K) + 4 H tau_bar alpha ln(A / alpha)   (Lemma 1, FTL regret of Lemma 2
and convexity, Eqs. 34-36). With Theorem 1 for each game:

      (1/K) sum_k NE-gap_k <= (24 H / (eta T)) [ Delta/K + 8 (A + B)(1 + ln K)/(alpha K) + 4 H tau_bar alpha ln(A B / alpha^2) ]

(the "intermediate form", computed from a run's actual tau_bar and alpha). Substituting
alpha = 1/sqrt(K), tau_bar <= 4 H log T and eta = 1/(8 H^2) gives the paper's display (Eq. 6)

      (192 H^3 / T) [ Delta/K + 10 (A + B) log K / sqrt(K) + 16 H^2 log T log(A B K) / sqrt(K) ].

Note the paper's simplification 8 (1 + ln K) <= 10 ln K holds only for K >= e^4 (about 55); for
smaller K the intermediate form is the larger, and the one to check runs against.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["Theorem1Bound", "Theorem2Bound", "theorem1_bound", "theorem2_bound"]


@dataclass(frozen=True)
class Theorem1Bound:
    """Theorem 1 bounds on NE-gap(mu_bar, nu_bar) of one run, with the conditions under which they hold.

    ``kl_form``: (24 H / (eta T)) * kl_sum from the run's actual best responses and initial policies.
    ``uniform_form``: (24 H^2 tau_bar log(AB)) / (eta T), the KL form's worst case under uniform init.
    ``eq4``: 96 H^3 log T log(AB) / (eta T), i.e. Eq. (4) (= 768 H^5 log T log(AB)/T at eta = 1/(8H^2)).
    ``eta_ok``: eta <= 1/(8 H^2) (Theorem 1's condition).
    ``stages_ok``: tau_bar <= 4 H log T (used by Eq. 4; fails for very small T).
    ``reset_ok``: the run reset its iterates at every stage start (the algorithm the proof analyses;
    the no-reset variant is outside the theorem).
    """

    kl_form: float
    uniform_form: float
    eq4: float
    kl_sum: float
    eta_ok: bool
    stages_ok: bool
    reset_ok: bool

    @property
    def conditions_hold(self) -> bool:
        return self.eta_ok and self.reset_ok

    def as_dict(self) -> dict:
        return asdict(self) | {"conditions_hold": self.conditions_hold}


def theorem1_bound(
    H: int, T: int, eta: float, A: int, B: int, num_stages: int, kl_sum: float, stage_reset: bool = True
) -> Theorem1Bound:
    """Theorem 1 bounds (module docstring). ``kl_sum`` = sum_h sum_tau max_s [KL(mu dag || mu init) + KL(nu dag || nu init)]."""
    c = 24.0 * H / (eta * T)
    return Theorem1Bound(
        kl_form=c * kl_sum,
        uniform_form=c * H * num_stages * math.log(A * B),
        eq4=96.0 * H**3 * math.log(T) * math.log(A * B) / (eta * T),
        kl_sum=float(kl_sum),
        eta_ok=bool(eta <= 1.0 / (8.0 * H * H)),
        stages_ok=bool(num_stages <= 4.0 * H * math.log(T)),
        reset_ok=bool(stage_reset),
    )


@dataclass(frozen=True)
class Theorem2Bound:
    """Theorem 2 bounds on (1/K) sum_k NE-gap of the meta-learning run.

    ``intermediate``: (24 H/(eta T)) [Delta/K + 8(A+B)(1+ln K)/(alpha K) + 4 H tau_bar alpha ln(AB/alpha^2)].
    ``paper``: (24 H/(eta T)) [Delta/K + 10(A+B) ln K/sqrt K + 16 H^2 ln T ln(ABK)/sqrt K] (Eq. 6 at eta = 1/(8H^2)).
    Conditions: ``eta_ok`` (eta <= 1/(8H^2)), ``alpha_ok`` (alpha in (0, 1/2)), ``reset_ok`` (stage
    reset, as in Theorem 1); the paper form also
    needs ``alpha_is_default`` (alpha = 1/sqrt K) and ``stages_ok`` (tau_bar <= 4 H log T).
    """

    intermediate: float
    paper: float
    delta: float
    eta_ok: bool
    alpha_ok: bool
    alpha_is_default: bool
    stages_ok: bool
    reset_ok: bool

    @property
    def conditions_hold(self) -> bool:
        return self.eta_ok and self.alpha_ok and self.reset_ok

    def as_dict(self) -> dict:
        return asdict(self) | {"conditions_hold": self.conditions_hold}


def theorem2_bound(
    H: int, T: int, eta: float, K: int, A: int, B: int, alpha: float, num_stages: int, delta: float,
    stage_reset: bool = True,
) -> Theorem2Bound:
    """Theorem 2 bounds (module docstring) from a run's actual tau_bar = ``num_stages``, alpha and Delta."""
    c = 24.0 * H / (eta * T)
    lnK = math.log(K)
    intermediate = c * (
        delta / K + 8.0 * (A + B) * (1.0 + lnK) / (alpha * K) + 4.0 * H * num_stages * alpha * math.log(A * B / alpha**2)
    )
    paper = c * (delta / K + 10.0 * (A + B) * lnK / math.sqrt(K) + 16.0 * H**2 * math.log(T) * math.log(A * B * K) / math.sqrt(K))
    return Theorem2Bound(
        intermediate=intermediate,
        paper=paper,
        delta=float(delta),
        eta_ok=bool(eta <= 1.0 / (8.0 * H * H)),
        alpha_ok=bool(0.0 < alpha < 0.5),
        alpha_is_default=bool(math.isclose(alpha, 1.0 / math.sqrt(K), rel_tol=1e-12)),
        stages_ok=bool(num_stages <= 4.0 * H * math.log(T)),
        reset_ok=bool(stage_reset),
    )
