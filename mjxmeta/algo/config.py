"""Run configuration: frozen dataclasses and their validation.

This is the only declaration of a run's settings: every field has a type, a
default and a line in its class's ``Attributes`` section, from which
:mod:`mjxmeta.cli` generates one ``mjxmeta train`` flag per field
(:func:`field_docs`; a field's ``metadata["flag"]`` names its flag where the
generated ``--<name>`` would not do). :func:`validate` checks every field in
plain Python (no JAX import, no compile) and raises :class:`ConfigError`
naming the field, the value and what is accepted.

The defaults are the main job (``mjxmeta train``: the ``meta`` teacher on
MJX ``inverted_pendulum``, 4 seeds, 50k env steps per seed). Where the paper
(Xu, Liu, Zhao, Peng, ICML 2018) is silent they follow OpenAI Baselines' DDPG
of 2017 (preset ``baselines2017``); ``modern`` is the 256-256 / batch 256 /
lr 3e-4 setting (docs/algorithm.md, "Defaults").
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
import re
from typing import Any

ENV_NAMES = (
    "pendulum",
    "inverted_pendulum",
    "inverted_double_pendulum",
    "reacher",
    "hopper",
    "halfcheetah",
    "mountain_car_continuous",
    "cartpole_swingup_sparse",
    "acrobot_swingup_sparse",
    "ball_in_cup",
)
# MuJoCo Playground's dm_control suite tasks: need the optional extra ``mjxmeta[playground]`` (name -> its registry name).
PLAYGROUND_ENVS = {
    "cartpole_swingup_sparse": "CartpoleSwingupSparse",
    "acrobot_swingup_sparse": "AcrobotSwingupSparse",
    "ball_in_cup": "BallInCup",
}
TEACHER_NAMES = ("gaussian", "ou", "meta_variance", "meta", "meta_state", "pink", "meta_latent", "param_noise")
META_TEACHERS = ("meta_variance", "meta", "meta_state", "meta_latent")
NET_TEACHERS = ("meta", "meta_state", "meta_latent")  # mean is a network f (``teacher.residual`` applies)
FLOAT32_TINY = 1.1754943508222875e-38  # np.finfo(np.float32).tiny: smaller nonzero values are 0 or denormal on device
STUDENT_NAMES = ("ddpg", "td3")
# Baselines run end to end by Brax's own trainers (mjxmeta.baselines.brax), not Student implementations: they read
# only the fields in BRAX_FIELDS and take no teacher (their own stochastic policy explores).
BRAX_STUDENTS = ("sac", "ppo")
STUDENT_NAMES += BRAX_STUDENTS
_BRAX_COMMON = ("env", "integrator", "episode_length", "seeds", "seed", "num_envs", "total_steps", "eval_envs", "eval_every",
                "student.name", "student.hidden", "student.actor_lr", "student.batch_size", "student.gamma",
                "student.normalize_observations", "student.updates_per_iteration")
BRAX_FIELDS = {"sac": _BRAX_COMMON + ("student.layer_norm", "student.buffer_size", "student.tau"),
               "ppo": _BRAX_COMMON + ("rollout_steps",)}
BRAX_TEACHER = "gaussian"  # the (unused) teacher a sac/ppo config records: a noise teacher, so no meta-loop setting
SAC_LEARNING_STARTS = 1000  # Brax SAC's min_replay_size: transitions collected before the first update
PPO_MINIBATCHES = 4  # Brax PPO's num_minibatches: an epoch's batch_size * minibatches unrolls, per gradient pass
BASELINE_NAMES = ("auto", "leave_one_out", "ema", "none")
ESTIMATOR_NAMES = ("reinforce", "es", "pathwise")
PATHWISE_TEACHERS = ("meta_variance", "meta")  # teachers the ``pathwise`` estimator supports (mjxmeta.algo.pathwise)
PATHWISE_DYNAMICS = ("one_step", "full")
# Envs the ``pathwise`` estimator can differentiate in reverse mode: the pure-JAX ones. MJX's constraint
# solver (mujoco-mjx 3.17, ``solver.solve``) runs a ``lax.while_loop`` unless ``opt.iterations == 1``, and JAX
# cannot reverse-differentiate a while loop (measured on ``inverted_pendulum``: ValueError at trace time).
PATHWISE_ENVS = ("pendulum", "mountain_car_continuous")
LOG_STD_BOUNDS = ("sigmoid", "clip")
LOOKAHEAD_DATA = ("d0", "mixed")
PRESET_NAMES = ("baselines2017", "modern")
# MuJoCo integrator of the MJX envs: "euler" = Brax's copies of the models as shipped (no integrator attribute:
# semi-implicit Euler), "rk4" = the integrator gymnasium's models of the same envs declare (all but halfcheetah).
INTEGRATORS = ("euler", "rk4")
MJX_ENVS = ("inverted_pendulum", "inverted_double_pendulum", "reacher", "hopper", "halfcheetah")
# Which fields ``Config.sweep`` may vary is declared on the field itself: metadata ``sweep`` = the teachers
# whose runs read it (continuous fields that change no shape, vmapped like seeds; :func:`sweepable_fields`).
MAX_RUNS = 4096  # seeds x sweep combinations vmapped in one program
# Time limits when ``episode_length`` is 0: Gymnasium's Pendulum-v1 (200 steps) and MountainCarContinuous-v0
# (999), Brax's MJX envs and Playground's dm_control suite tasks (1000).
EPISODE_LENGTHS = {"pendulum": 200, "mountain_car_continuous": 999}
MJX_EPISODE_LENGTH = 1000


def default_episode_length(env: str) -> int:
    """The env's own time limit in steps (200 ``pendulum``, 999 ``mountain_car_continuous``, else 1000)."""
    return EPISODE_LENGTHS.get(env, MJX_EPISODE_LENGTH)


class ConfigError(ValueError):
    """A config field holds a value outside its accepted set.

    Attributes:
      field: dotted name of the offending field, e.g. ``"student.batch_size"``.
    """

    def __init__(self, field_name: str, value: Any, accepted: str):
        self.field = field_name
        try:
            shown = repr(value)
        except ValueError:  # e.g. an int with more digits than Python will print
            shown = f"<{type(value).__name__} too large to print>"
        super().__init__(f"config field '{field_name}' = {shown} is invalid: accepted {accepted}")


def field_docs(cls: type) -> dict[str, str]:
    """{field name: its text} from the ``Attributes:`` section of ``cls``'s docstring.

    An entry is ``name: text`` (or ``a, b, c: text``, shared by several fields)
    with continuation lines indented further; the text is joined into one line.
    """
    doc = (cls.__doc__ or "").split("Attributes:", 1)
    if len(doc) < 2:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc[1].splitlines():
        m = re.match(r"^ {4,6}([a-z_][a-z0-9_, ]*):\s+(.*)$", line)
        if m and line[:6].strip() == "" and not line[6:7].isspace():
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2).strip()
        elif names and line.strip():
            for n in names:
                out[n] += " " + line.strip()
        elif not line.strip() and out:
            names = []
    return out


@dataclass(frozen=True)
class StudentConfig:
    """Student: DDPG (Lillicrap et al. 2016; Baselines 2017 defaults) or TD3 (Fujimoto et al. 2018).

    Attributes:
      name: student algorithm, one of :data:`STUDENT_NAMES` (:func:`mjxmeta.algo.students.make`);
        ``sac`` and ``ppo`` run Brax's own trainers instead (:mod:`mjxmeta.baselines.brax`;
        no teacher, only the fields in :data:`BRAX_FIELDS`).
      hidden: hidden layer widths of actor and critic.
      layer_norm: LayerNorm after each hidden layer (Baselines: on).
      action_layer: the hidden layer before which the action joins the
        critic: 1 = after the first hidden layer (Baselines), 0 = with the
        observation at the input (SB3/SBX; Fujimoto et al. 2018's TD3).
      output_init: the actor's and critic's output layers are initialised
        from U(-output_init, output_init) (Lillicrap et al. 2016: 3e-3);
        0 = Flax's default (LeCun-normal kernel, zero bias; SB3/SBX).
      actor_lr: Adam learning rate of the actor mu.
      critic_lr: Adam learning rate of the critic Q.
      critic_l2: L2 coefficient on critic hidden kernels; loss term
        ``critic_l2 * sum(w**2) / 2`` (TF ``l2_regularizer`` as in Baselines).
      batch_size: minibatch size of every gradient step.
      buffer_size: replay capacity in transitions (per seed).
      gamma: discount factor.
      tau: Polyak coefficient, ``theta' <- (1 - tau) theta' + tau theta``.
      normalize_observations: normalize observations with running statistics
        (clipped to +-5 as in Baselines).
      lr_decay: learning-rate decay: actor and critic learning rates (of the
        student and its look-ahead copies) fall linearly in the env steps
        used, from their values at step 0 to ``lr_decay`` times them at
        ``total_steps``; 1 = constant (Baselines).
      updates_per_iteration: student gradient steps per iteration; 0 = auto:
        one update per two transitions inserted into the replay buffer
        (Baselines' ratio, 50 updates per 100 rollout steps).
      policy_noise: TD3 target-policy smoothing: std sigma~ of the Gaussian
        noise added to the target actor's action in the critic target, in
        normalized action units (actions in [-1, 1]); 0 = no smoothing
        (``td3`` only; Fujimoto et al. 2018: 0.2).
      noise_clip: TD3: the smoothing noise is clipped to [-noise_clip,
        noise_clip] before it is added, in normalized action units (``td3``
        only; Fujimoto et al. 2018: 0.5).
      policy_delay: TD3: the actor and all target networks are updated once
        every policy_delay critic updates (``td3`` only; Fujimoto et al. 2018: 2).
      critics: TD3: N, critics in the ensemble (``td3`` only; Fujimoto et al.
        2018: 2; REDQ, Chen et al. 2021: 10).
      critic_subset: TD3: M, the critic target takes the min over a random
        subset of M of the N target critics, drawn per update, and the actor
        ascends the mean of all N critics (REDQ, Chen et al. ICLR 2021,
        Algorithm 1); 0 = the min over all N and the actor on Q_1 (TD3)
        (``td3`` only).
    """

    name: str = field(default="ddpg", metadata={"flag": "student", "choices": STUDENT_NAMES})
    hidden: tuple[int, ...] = (64, 64)
    layer_norm: bool = True
    action_layer: int = 1
    output_init: float = 3e-3
    actor_lr: float = field(default=1e-4, metadata={"sweep": TEACHER_NAMES})
    critic_lr: float = field(default=1e-3, metadata={"sweep": TEACHER_NAMES})
    critic_l2: float = 1e-2
    batch_size: int = 64
    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = field(default=0.01, metadata={"sweep": TEACHER_NAMES})
    normalize_observations: bool = True
    lr_decay: float = 1.0
    updates_per_iteration: int = field(default=0, metadata={"flag": "updates"})
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    critics: int = 2
    critic_subset: int = 0


PRESETS: dict[str, dict[str, Any]] = {
    "baselines2017": dict(hidden=(64, 64), batch_size=64, actor_lr=1e-4, critic_lr=1e-3, tau=0.01,
                          critic_l2=1e-2, layer_norm=True),
    "modern": dict(hidden=(256, 256), batch_size=256, actor_lr=3e-4, critic_lr=3e-4, tau=0.005,
                   critic_l2=0.0, layer_norm=False),
}


def student_preset(preset: str, **overrides: Any) -> StudentConfig:
    """Returns the student preset ``preset`` with ``overrides`` applied.

    Raises:
      ConfigError: if ``name`` is not one of :data:`PRESET_NAMES`.
    """
    if preset not in PRESETS:
        raise ConfigError("student.preset", preset, f"one of {PRESET_NAMES}")
    return StudentConfig(**{**PRESETS[preset], **overrides})


@dataclass(frozen=True)
class TeacherConfig:
    """Exploration policy (teacher) pi_e.

    Attributes:
      name: exploration policy, one of :data:`TEACHER_NAMES`
        (docs/algorithm.md, "Teachers").
      init_std: initial (``meta*``) or fixed (``gaussian``, ``pink``) action-noise
        std in the normalized action space [-1, 1]; for ``param_noise`` the
        initial weight-noise std sigma_p.
      lr: Adam learning rate of the meta-policy gradient step (eta in eq. 2).
      hidden: hidden widths of the teacher network f (``meta``, ``meta_state``).
      residual: the teacher's mean is a residual on the student's actor,
        f(s) = mu(s) + g(s) with mu held fixed (stop-gradient) and g's output
        layer initialised to 0, so D0 starts as the student's behaviour plus
        noise; off: f is the paper's independent network (``meta``,
        ``meta_state`` only; ``meta_state``'s g reads x(s) as f does).
      ou_theta: Ornstein-Uhlenbeck mean reversion theta (``ou``; Baselines 0.15).
      ou_sigma: Ornstein-Uhlenbeck scale sigma (``ou``; Baselines 0.2).
      ou_dt: Ornstein-Uhlenbeck time step dt (``ou``; Baselines 1e-2).
      baseline: meta-reward baseline: ``leave_one_out`` (K >= 2), ``ema``,
        ``none`` (the paper's estimator) or ``auto`` (leave_one_out if K >= 2,
        else ema).
      ema_decay: decay of the moving-average baseline.
      min_log_std: lower bound of the learned log sigma.
      max_log_std: upper bound of the learned log sigma.
      log_std_bound: how log sigma is kept in [min_log_std, max_log_std]:
        ``sigmoid`` (log sigma = min + (max - min) sigmoid(raw); the gradient
        never vanishes, so Adam can always bring it back) or ``clip`` (a hard
        clip: the gradient is exactly zero outside the range and Adam momentum
        can park the parameter there for good; measured in the tests).
      estimator: meta-gradient estimator of the teacher's parameters:
        ``reinforce`` (eq. 2, through the action log-probabilities) or ``es``
        (antithetic parameter perturbations theta +- es_sigma delta across the
        K candidates with common start states, common action noise and common
        look-ahead minibatches; needs an even K) or ``pathwise`` (the
        gradient of a critic-closed short-horizon return of every pi'_k,
        differentiated through the reparameterized D0 actions, the env step and
        the look-ahead's updates; ``meta_variance`` and ``meta`` only;
        docs/algorithm.md, "The pathwise estimator").
      es_sigma: perturbation scale of the ``es`` estimator in the raw parameter space.
      noise_exponent: beta of the ``pink`` teacher's colored noise, power
        spectrum ∝ 1/f^beta per episode and action dimension (1 = pink, as
        Eberhard et al. 2023; 0 = white; 2 = red/Brownian); its scale is init_std.
      latent_size: dimension of the ``meta_latent`` teacher's per-episode latent z.
      param_noise_delta: target action distance delta of the ``param_noise``
        teacher (Plappert et al. 2018; Baselines' adaptive-param_0.2): its
        weight-noise scale sigma_p (starting at init_std) grows by
        param_noise_alpha while the perturbed actor's RMS action distance is
        below it and shrinks otherwise.
      param_noise_alpha: the factor alpha > 1 of the ``param_noise`` adaptation (Baselines 1.01).
    """

    name: str = field(default="meta", metadata={"flag": "teacher", "choices": TEACHER_NAMES})
    init_std: float = field(default=0.2, metadata={"flag": "teacher-std",
                                                   "sweep": tuple(t for t in TEACHER_NAMES if t != "ou")})
    lr: float = field(default=1e-3, metadata={"sweep": META_TEACHERS})
    hidden: tuple[int, ...] = (64, 64)
    residual: bool = False
    ou_theta: float = 0.15
    ou_sigma: float = field(default=0.2, metadata={"sweep": ("ou",)})
    ou_dt: float = 1e-2
    baseline: str = field(default="auto", metadata={"flag": "baseline", "choices": BASELINE_NAMES})
    ema_decay: float = 0.9
    min_log_std: float = -5.0
    max_log_std: float = 1.0
    log_std_bound: str = field(default="sigmoid", metadata={"choices": LOG_STD_BOUNDS})
    estimator: str = field(default="reinforce", metadata={"choices": ESTIMATOR_NAMES})
    es_sigma: float = 0.05
    noise_exponent: float = 1.0
    latent_size: int = 2
    param_noise_delta: float = 0.2
    param_noise_alpha: float = 1.01


@dataclass(frozen=True)
class MetaConfig:
    """The meta-policy-gradient loop (Algorithm 1 with K candidates).

    Attributes:
      candidates: K, candidate D0 batches per iteration.
      lookahead_updates: gradient steps of each look-ahead pi'_k; 0 = auto:
        one per two D0 transitions, the student's ratio (50 for N*T = 100).
      lookahead_lr_scale: the look-ahead's actor and critic learning rates are
        the student's times this factor (Adam state carried over).
      lookahead_data: minibatches of the look-ahead: ``d0`` (D0 only, the
        paper's reading) or ``mixed`` (B u D0: a share lookahead_d0_fraction
        of every minibatch from D0, the rest from the replay buffer B with the
        same buffer rows for every candidate, so candidates differ only by D0).
        Default ``mixed``: on pendulum the D0-only look-ahead made pi' worse
        than pi by 100-400 return for most sigma, the mixed one by ~4 (student
        at 10k steps) and far less than D0-only at 30k steps
        (experiments/meta_gradient/results).
      lookahead_d0_fraction: share of each ``mixed`` minibatch drawn from D0;
        round(fraction * batch_size) rows, at least 1.
      paired: paired candidates: all K candidates start their D0 from the same
        env states, draw antithetic action noise (eps for k < K/2, -eps for
        candidate k + K/2) and use the same look-ahead minibatch indices; needs
        an even K; implied by the ``es`` estimator (with common, not
        antithetic, noise). Caution: the REINFORCE score of log sigma,
        sum_t (eps_t^2 - 1), is even in eps, so with K = 2 and leave-one-out
        the log-sigma gradient is exactly 0; pairing helps the mean f only.
      return_envs: E, parallel environments for R-hat (common random numbers).
      return_horizon: H, steps of each R-hat rollout (paper: ~200).
      grad_horizon: H_grad of the ``pathwise`` estimator: the first H_grad
        steps of each pi'_k's R-hat rollout are differentiated, the rest of
        the return is replaced by the student's critic at s_{H_grad}
        (1 <= H_grad <= return_horizon; no extra env steps).
      pathwise_dynamics: how far the ``pathwise`` gradient follows the D0
        rollout: ``one_step`` (s_t held fixed; each action reaches only its own
        step's r_t and s_{t+1}) or ``full`` (through the whole D0 rollout,
        s_{t+1} feeding the next action and step).
    """

    candidates: int = 2
    lookahead_updates: int = 0
    lookahead_lr_scale: float = 1.0
    lookahead_data: str = field(default="mixed", metadata={"choices": LOOKAHEAD_DATA})
    lookahead_d0_fraction: float = 0.25
    paired: bool = False
    return_envs: int = 1
    return_horizon: int = 200
    grad_horizon: int = 10
    pathwise_dynamics: str = field(default="one_step", metadata={"choices": PATHWISE_DYNAMICS})


# Fields only the meta teachers read (all of MetaConfig, and the meta-reward baseline); setting one
# explicitly for a noise teacher is refused (:func:`check_explicit_fields`).
META_ONLY_FIELDS = tuple(f"meta.{f.name}" for f in dataclasses.fields(MetaConfig)) + ("teacher.baseline",)
# Fields only the ``td3`` student reads; setting one explicitly for another student is refused.
TD3_ONLY_FIELDS = ("student.policy_noise", "student.noise_clip", "student.policy_delay", "student.critics",
                   "student.critic_subset")
# Fields only the ``pathwise`` estimator reads; setting one explicitly with another estimator is refused.
PATHWISE_ONLY_FIELDS = ("meta.grad_horizon", "meta.pathwise_dynamics")


@dataclass(frozen=True)
class Config:
    """A whole training run.

    Attributes:
      env: environment name, one of :data:`ENV_NAMES`.
      integrator: MuJoCo integrator of the MJX envs (:data:`MJX_ENVS`):
        ``euler`` (Brax's copies of the models, which drop the integrator
        attribute: semi-implicit Euler) or ``rk4`` (what gymnasium's models of
        inverted_pendulum, inverted_double_pendulum, reacher and hopper
        declare; same time step, 4 physics evaluations per step; see
        docs/envs.md). Other envs accept only ``euler``.
      episode_length: time limit in steps; 0 = env default (1000 MJX and Playground, 200 pendulum,
        999 mountain_car_continuous; :func:`default_episode_length`).
      seeds: S, independent seeds vmapped in one program.
      seed: base PRNG seed; seed i of the run uses ``fold_in(PRNGKey(seed), i)``.
      num_envs: N, teacher environments per candidate.
      rollout_steps: T, teacher steps per environment per iteration.
      reset_pool: fresh start states per env drawn (one batched reset) for
        auto-resets: once per iteration for the teacher envs, once per rollout
        for R-hat and evaluation; an env whose episode ends takes the next one.
        0 = auto: ceil(max(T, H) / 10), enough for episodes of >= 10 steps on
        average; beyond that, starts are reused within the iteration (metric
        ``reused_starts``).
      total_steps: budget in env steps per seed, counting D0, D1 and R-hat rollouts.
      learning_starts: warm-up in env steps per seed: every iteration that
        starts below it executes uniformly random D0 actions in [-1, 1] and
        updates neither the student nor the teacher (its data still enters
        the replay buffer and the observation statistics); SB3's
        ``learning_starts``, counted in whole iterations; 0 = none.
      log_every: iterations per scan chunk (one log point per chunk).
      eval_envs: evaluation episodes per seed at each evaluated log point
        (deterministic student, one full episode per env, all seeds in one
        batched rollout); the final evaluation is their mean.
      eval_every: env steps per seed between evaluations: a log point
        evaluates when its env-step count passes a multiple of eval_every;
        the run's last log point always does (:func:`evaluates_at`);
        0 = only at the end. Rows of other log points carry no
        ``eval_return``.
      checkpoint_every: iterations between Orbax checkpoints (a multiple of
        log_every); 0 = only at the end.
      keep: number of most recent checkpoints kept.
      visit_samples: D0 states kept per chunk for state-visitation plots
        (a uniform sample, ``visit_samples // log_every`` per iteration);
        0 disables.
      sweep: hyperparameter sweep: ``((field, (v1, v2, ...)), ...)``; the run
        vmaps over every combination of the values (the product) x ``seeds``
        in one compiled program, and each swept value replaces the field's
        own. Fields: those whose metadata ``sweep`` names the run's teacher
        (:func:`sweepable_fields`). Flag syntax ``--sweep teacher.lr=1e-4,1e-3``,
        repeatable.
      student: the student (:class:`StudentConfig`).
      teacher: the teacher (:class:`TeacherConfig`).
      meta: the meta-gradient loop (:class:`MetaConfig`).
    """

    env: str = field(default="inverted_pendulum", metadata={"choices": ENV_NAMES})
    integrator: str = field(default="euler", metadata={"choices": INTEGRATORS})
    episode_length: int = 0
    seeds: int = 4
    seed: int = 0
    num_envs: int = 1
    rollout_steps: int = 100
    reset_pool: int = 0
    total_steps: int = field(default=50_000, metadata={"host": True})
    learning_starts: int = 0
    log_every: int = 10
    eval_envs: int = 10
    eval_every: int = field(default=20_000, metadata={"host": True})
    checkpoint_every: int = field(default=0, metadata={"host": True})
    keep: int = field(default=3, metadata={"host": True})
    visit_samples: int = 200
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)

    # ---- derived sizes -------------------------------------------------
    @property
    def is_meta(self) -> bool:
        return self.teacher.name in META_TEACHERS

    @property
    def num_candidates(self) -> int:
        """K for meta teachers; noise teachers run a single D0 batch."""
        return self.meta.candidates if self.is_meta else 1

    @property
    def d0_size(self) -> int:
        """Transitions in one candidate D0 batch (N * T)."""
        return self.num_envs * self.rollout_steps

    @property
    def lookahead_updates(self) -> int:
        """Look-ahead gradient steps per candidate (auto: d0_size // 2, at least 1)."""
        return self.meta.lookahead_updates or max(1, self.d0_size // 2)

    @property
    def lookahead_d0_rows(self) -> int:
        """Rows of each look-ahead minibatch drawn from D0 (all of them for ``d0``)."""
        if self.meta.lookahead_data == "d0":
            return self.student.batch_size
        return max(1, round(self.meta.lookahead_d0_fraction * self.student.batch_size))

    @property
    def paired(self) -> bool:
        """Paired candidates: common start states and look-ahead indices (``meta.paired`` or ES)."""
        return self.is_meta and (self.meta.paired or self.teacher.estimator == "es")

    @property
    def student_updates(self) -> int:
        """Student gradient steps per iteration (auto: inserted_per_iteration // 2, at least 1)."""
        return self.student.updates_per_iteration or max(1, self.inserted_per_iteration // 2)

    @property
    def steps_per_iteration(self) -> int:
        """Env steps per iteration: K*N*T (D0) + E*H*(K+1) (D1 and R-hat(pi))."""
        steps = self.num_candidates * self.d0_size
        if self.is_meta:
            steps += self.meta.return_envs * self.meta.return_horizon * (self.num_candidates + 1)
        return steps

    @property
    def inserted_per_iteration(self) -> int:
        """Transitions added to the replay buffer per iteration (D0 and D1)."""
        n = self.num_candidates * self.d0_size
        if self.is_meta:
            n += self.meta.return_envs * self.meta.return_horizon * self.num_candidates
        return n

    @property
    def num_iterations(self) -> int:
        return max(1, math.ceil(self.total_steps / self.steps_per_iteration))

    @property
    def visits_per_iteration(self) -> int:
        """D0 states sampled per iteration into the visitation sample (0 if disabled)."""
        if not self.visit_samples:
            return 0
        return max(1, min(self.visit_samples // self.log_every, self.num_candidates * self.d0_size))

    @property
    def resolved_reset_pool(self) -> int:
        """Fresh start states per env in the auto-reset pool (auto: ceil(max(T, H) / 10))."""
        if self.reset_pool:
            return self.reset_pool
        horizon = max(self.rollout_steps, self.meta.return_horizon if self.is_meta else 0)
        return max(1, math.ceil(horizon / 10))

    @property
    def resolved_episode_length(self) -> int:
        return self.episode_length or default_episode_length(self.env)

    @property
    def num_points(self) -> int:
        """V, combinations of swept values (1 without a sweep)."""
        return math.prod(len(values) for _, values in self.sweep)

    @property
    def num_runs(self) -> int:
        """V * S, runs vmapped in one program; run r has combination r // S and seed r % S."""
        return self.num_points * self.seeds


# ---------------------------------------------------------------------------
# sweeps


def sweepable_fields(config: Config) -> tuple[str, ...]:
    """The fields ``config.sweep`` may vary for ``config``'s teacher, in declaration order: those whose
    metadata ``sweep`` names the teacher (``teacher.lr`` only for meta teachers, ``teacher.ou_sigma`` only
    for ``ou``, ``teacher.init_std`` for every other teacher, the student's learning rates and tau for all).
    """
    t = config.teacher.name
    return tuple(f"{sub}.{f.name}" for sub in ("student", "teacher") for f in dataclasses.fields(getattr(config, sub))
                 if t in f.metadata.get("sweep", ()))


def sweep_points(config: Config) -> list[dict[str, float]]:
    """The V combinations of ``config.sweep``, ``[{field: value}, ...]``, first field slowest ([{}] without)."""
    fields = [f for f, _ in config.sweep]
    return [dict(zip(fields, values)) for values in itertools.product(*(v for _, v in config.sweep))]


def point_config(config: Config, point: dict[str, float]) -> Config:
    """``config`` without its sweep and with the fields of ``point`` set: the config one combination runs."""
    for dotted, value in point.items():
        config = replace_field(config, dotted, value)
    return dataclasses.replace(config, sweep=())


def _check_sweep(c: Config) -> None:
    """The sweep's shape and fields; every combination then passes :func:`validate` (``validate`` calls this)."""
    ok = isinstance(c.sweep, tuple) and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], tuple)
        for item in c.sweep)
    if not ok:
        raise ConfigError("sweep", c.sweep, "a tuple of (field, (value, ...)) pairs")
    accepted = sweepable_fields(c)
    seen = set()
    for dotted, values in c.sweep:
        if dotted not in accepted:
            raise ConfigError("sweep", dotted, f"a field in {accepted} (continuous fields that change no shape "
                                               f"and that teacher {c.teacher.name!r} reads)")
        if dotted in seen:
            raise ConfigError("sweep", dotted, "each field once (give all its values in one --sweep)")
        seen.add(dotted)
        if not values:
            raise ConfigError(f"sweep {dotted}", values, "at least one value")
        for v in values:
            _check_type(dotted, v, float)
        if len(set(values)) < len(values):
            raise ConfigError(f"sweep {dotted}", values, "distinct values")
    if c.num_runs > MAX_RUNS:
        raise ConfigError("sweep", c.sweep, f"at most {MAX_RUNS} runs (combinations {c.num_points} x seeds "
                                            f"{c.seeds} = {c.num_runs})")


# ---------------------------------------------------------------------------
# validation


def _check_type(name: str, value: Any, typ: type) -> None:
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise ConfigError(name, value, f"a value of type {typ.__name__}")


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    _check_type(name, value, int)
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(name, value, f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}")


def _float(name: str, value: Any, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
    _check_type(name, value, float)
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float, e.g. 10**400
        finite = False
    bad = (not finite or value < lo or value > hi or (lo_open and value == lo)
           or (hi_open and value == hi))
    if finite and 0 < abs(value) < FLOAT32_TINY:  # passes "> 0" in Python but is 0 (or denormal) in float32
        raise ConfigError(name, value, f"0 or a magnitude >= {FLOAT32_TINY:.6g} (the smallest normal float32)")
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ConfigError(name, value, f"a finite number in {lb}{lo}, {hi}{rb}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(name, value, f"one of {choices}")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(name, value, "True or False")


def _widths(name: str, value: Any) -> None:
    if not isinstance(value, tuple) or not value or not all(
            isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 65536 for w in value):
        raise ConfigError(name, value, "a non-empty tuple of integers in [1, 65536]")


def _extra_installed(name: str, env: str) -> None:
    """A Playground env needs ``mujoco_playground`` importable (looked up, not imported: no JAX here)."""
    import importlib.util
    if env in PLAYGROUND_ENVS and importlib.util.find_spec("mujoco_playground") is None:
        raise ConfigError(name, env, f"an installed env: {env!r} needs the optional extra mjxmeta[playground] "
                          "(pip install 'mjxmeta[playground]')")


def validate(config: Config) -> Config:
    """Checks every field of ``config`` and the cross-field constraints.

    Runs in pure Python before any JAX compile.

    Returns:
      ``config`` unchanged.

    Raises:
      ConfigError: naming the first invalid field and the accepted values.
    """
    if not isinstance(config, Config):
        raise ConfigError("config", type(config).__name__, "a mjxmeta.algo.config.Config")
    c, s, t, m = config, config.student, config.teacher, config.meta
    for name, sub, typ in (("student", s, StudentConfig), ("teacher", t, TeacherConfig), ("meta", m, MetaConfig)):
        if not isinstance(sub, typ):
            raise ConfigError(name, type(sub).__name__, f"a {typ.__name__}")
    _choice("env", c.env, ENV_NAMES)
    _extra_installed("env", c.env)
    _choice("integrator", c.integrator, INTEGRATORS)
    if c.integrator != "euler" and c.env not in MJX_ENVS:
        raise ConfigError("integrator", c.integrator, f"'euler' for env {c.env!r} (only the MJX envs {MJX_ENVS} "
                                                      "take another integrator)")
    _int("episode_length", c.episode_length, 0, 100_000)
    _int("seeds", c.seeds, 1, 4096)
    _int("seed", c.seed, 0, 2**31 - 1)
    _int("num_envs", c.num_envs, 1, 65536)
    _int("rollout_steps", c.rollout_steps, 1, 100_000)
    _int("reset_pool", c.reset_pool, 0, 100_000)
    _int("total_steps", c.total_steps, 1, 2_000_000_000)  # env_steps is an int32 counter
    _int("learning_starts", c.learning_starts, 0, 2_000_000_000)
    if c.learning_starts >= c.total_steps:
        raise ConfigError("learning_starts", c.learning_starts,
                          f"an integer below total_steps={c.total_steps} (the warm-up would be the whole run)")
    _int("log_every", c.log_every, 1, 10**6)
    _int("eval_envs", c.eval_envs, 1, 4096)
    _int("eval_every", c.eval_every, 0, 2_000_000_000)
    _int("checkpoint_every", c.checkpoint_every, 0, 10**9)
    if c.checkpoint_every % c.log_every:
        raise ConfigError("checkpoint_every", c.checkpoint_every,
                          f"0 or a multiple of log_every={c.log_every} (saves happen between scan chunks)")
    _int("keep", c.keep, 1, 10**6)
    _int("visit_samples", c.visit_samples, 0, 10**6)

    _choice("student.name", s.name, STUDENT_NAMES)
    _widths("student.hidden", s.hidden)
    _bool("student.layer_norm", s.layer_norm)
    _int("student.action_layer", s.action_layer, 0, len(s.hidden))  # hidden: a tuple, checked above
    _float("student.output_init", s.output_init, 0.0, 10.0)
    _float("student.actor_lr", s.actor_lr, 0.0, 1e3, lo_open=True)
    _float("student.critic_lr", s.critic_lr, 0.0, 1e3, lo_open=True)
    _float("student.critic_l2", s.critic_l2, 0.0, 1e3)
    _int("student.batch_size", s.batch_size, 1, 1 << 20)
    _int("student.buffer_size", s.buffer_size, 1, 10**8)
    _float("student.gamma", s.gamma, 0.0, 1.0, hi_open=True)
    _float("student.tau", s.tau, 0.0, 1.0, lo_open=True)
    _bool("student.normalize_observations", s.normalize_observations)
    _float("student.lr_decay", s.lr_decay, 0.0, 1.0)
    _int("student.updates_per_iteration", s.updates_per_iteration, 0, 10**6)
    _float("student.policy_noise", s.policy_noise, 0.0, 10.0)
    _float("student.noise_clip", s.noise_clip, 0.0, 10.0)
    _int("student.policy_delay", s.policy_delay, 1, 10**6)
    _int("student.critics", s.critics, 1, 1024)
    _int("student.critic_subset", s.critic_subset, 0, s.critics)

    _choice("teacher.name", t.name, TEACHER_NAMES)
    _float("teacher.init_std", t.init_std, 0.0, 10.0, lo_open=True)
    _float("teacher.lr", t.lr, 0.0, 1e3)
    _widths("teacher.hidden", t.hidden)
    _bool("teacher.residual", t.residual)
    _float("teacher.ou_theta", t.ou_theta, 0.0, 1e3)
    _float("teacher.ou_sigma", t.ou_sigma, 0.0, 10.0, lo_open=True)
    _float("teacher.ou_dt", t.ou_dt, 0.0, 10.0, lo_open=True)
    _choice("teacher.baseline", t.baseline, BASELINE_NAMES)
    _float("teacher.ema_decay", t.ema_decay, 0.0, 1.0, hi_open=True)
    _float("teacher.min_log_std", t.min_log_std, -20.0, 5.0)
    _float("teacher.max_log_std", t.max_log_std, -20.0, 5.0)
    if t.min_log_std >= t.max_log_std:
        raise ConfigError("teacher.min_log_std", t.min_log_std, f"a number below teacher.max_log_std={t.max_log_std}")
    _choice("teacher.log_std_bound", t.log_std_bound, LOG_STD_BOUNDS)
    if t.log_std_bound == "clip" and not t.min_log_std <= math.log(t.init_std) <= t.max_log_std:
        raise ConfigError("teacher.init_std", t.init_std,
                          f"a value whose log lies in [teacher.min_log_std, teacher.max_log_std] = "
                          f"[{t.min_log_std}, {t.max_log_std}]")
    if t.log_std_bound == "sigmoid" and not t.min_log_std < math.log(t.init_std) < t.max_log_std:
        raise ConfigError("teacher.init_std", t.init_std,
                          f"a value whose log lies strictly inside (teacher.min_log_std, teacher.max_log_std) = "
                          f"({t.min_log_std}, {t.max_log_std}) (the sigmoid bound reaches its ends only at infinity)")
    _choice("teacher.estimator", t.estimator, ESTIMATOR_NAMES)
    _float("teacher.es_sigma", t.es_sigma, 0.0, 10.0, lo_open=True)
    _float("teacher.noise_exponent", t.noise_exponent, 0.0, 4.0)
    _int("teacher.latent_size", t.latent_size, 1, 1024)
    _float("teacher.param_noise_delta", t.param_noise_delta, 0.0, 10.0, lo_open=True)
    _float("teacher.param_noise_alpha", t.param_noise_alpha, 1.0, 10.0, lo_open=True)

    _int("meta.candidates", m.candidates, 1, 4096)
    _int("meta.lookahead_updates", m.lookahead_updates, 0, 10**6)
    _float("meta.lookahead_lr_scale", m.lookahead_lr_scale, 0.0, 1e3, lo_open=True)
    _choice("meta.lookahead_data", m.lookahead_data, LOOKAHEAD_DATA)
    _float("meta.lookahead_d0_fraction", m.lookahead_d0_fraction, 0.0, 1.0, lo_open=True)
    _bool("meta.paired", m.paired)
    if c.is_meta and m.paired and m.candidates % 2:
        raise ConfigError("meta.candidates", m.candidates,
                          "an even number when meta.paired is on (antithetic pairs eps, -eps)")
    if c.is_meta and t.estimator == "es" and m.candidates % 2:
        raise ConfigError("meta.candidates", m.candidates,
                          "an even number when teacher.estimator = 'es' (antithetic pairs theta +- es_sigma delta)")
    _int("meta.return_envs", m.return_envs, 1, 65536)
    _int("meta.return_horizon", m.return_horizon, 1, 100_000)
    _int("meta.grad_horizon", m.grad_horizon, 1, 100_000)
    _choice("meta.pathwise_dynamics", m.pathwise_dynamics, PATHWISE_DYNAMICS)
    if c.is_meta and t.estimator == "pathwise":
        if t.name not in PATHWISE_TEACHERS:
            raise ConfigError("teacher.estimator", t.estimator,
                              f"'reinforce' or 'es' for teacher.name={t.name!r} (the pathwise estimator supports "
                              f"the teachers {PATHWISE_TEACHERS})")
        if c.env not in PATHWISE_ENVS:
            raise ConfigError("teacher.estimator", t.estimator,
                              f"'reinforce' or 'es' for env={c.env!r}: the pathwise estimator needs an env JAX can "
                              f"differentiate in reverse mode, one of {PATHWISE_ENVS} (MJX's constraint solver is a "
                              "while loop)")
        if m.grad_horizon > m.return_horizon:
            raise ConfigError("meta.grad_horizon", m.grad_horizon,
                              f"an integer <= meta.return_horizon={m.return_horizon} (the differentiated steps are "
                              "the head of the R-hat rollout)")
    if c.is_meta and t.baseline == "leave_one_out" and m.candidates < 2:
        raise ConfigError("teacher.baseline", t.baseline, "'ema', 'none' or 'auto' when meta.candidates == 1 "
                          "(the leave-one-out baseline needs K >= 2)")

    if s.name in BRAX_STUDENTS:
        return _check_brax(c)
    # cross-field sizes
    _check_batch_fits_buffer(s)
    if c.inserted_per_iteration > s.buffer_size:
        raise ConfigError("student.buffer_size", s.buffer_size,
                          f"an integer >= the transitions inserted per iteration ({c.inserted_per_iteration})")
    chunk_steps = c.log_every * c.steps_per_iteration
    if c.total_steps < chunk_steps:
        raise ConfigError("total_steps", c.total_steps,
                          f"an integer >= one chunk of log_every={c.log_every} iterations x {c.steps_per_iteration} "
                          f"env steps = {chunk_steps} (runs execute whole chunks); or lower log_every")
    executed = executed_iterations(c) * c.steps_per_iteration
    if executed > 2**31 - 1:
        raise ConfigError("total_steps", c.total_steps,
                          f"a budget whose whole chunks (log_every={c.log_every} iterations of "
                          f"{c.steps_per_iteration} env steps) stay below 2**31 env steps (int32 counter); "
                          f"this one runs {executed}")
    if c.inserted_per_iteration < s.batch_size:
        raise ConfigError("student.batch_size", s.batch_size,
                          f"an integer <= the transitions inserted per iteration ({c.inserted_per_iteration}); "
                          "raise num_envs or rollout_steps")
    if c.sweep != ():
        _check_sweep(c)
        for point in sweep_points(c):
            validate(point_config(c, point))
    return config


def _check_batch_fits_buffer(s: StudentConfig) -> None:
    """A minibatch is drawn from the replay buffer: batch_size <= buffer_size (the students and Brax's SAC)."""
    if s.batch_size > s.buffer_size:
        raise ConfigError("student.batch_size", s.batch_size, f"an integer <= student.buffer_size={s.buffer_size}")


def _check_brax(c: Config) -> Config:
    """The cross-field rules of a sac/ppo run (Brax's trainers; :mod:`mjxmeta.baselines.brax`)."""
    s = c.student
    if c.is_meta:
        raise ConfigError("teacher.name", c.teacher.name,
                          f"a noise teacher (e.g. {BRAX_TEACHER!r}) with student.name={s.name!r}: Brax's trainer "
                          "explores with its own stochastic policy and runs no meta loop; the teacher is unused")
    if c.sweep:
        raise ConfigError("sweep", c.sweep, f"() with student.name={s.name!r} (Brax's trainer runs one seed per "
                                            "call: run one job per setting)")
    if s.name == "sac" and c.total_steps <= SAC_LEARNING_STARTS:
        raise ConfigError("total_steps", c.total_steps, f"an integer > {SAC_LEARNING_STARTS} for sac (the "
                                                        "transitions collected before the first update)")
    if s.name == "sac":  # ppo has no replay buffer (it does not read student.buffer_size)
        _check_batch_fits_buffer(s)
    if s.name == "ppo" and (s.batch_size * PPO_MINIBATCHES) % c.num_envs:
        raise ConfigError("num_envs", c.num_envs, f"a divisor of student.batch_size * {PPO_MINIBATCHES} minibatches "
                                                  f"= {s.batch_size * PPO_MINIBATCHES} for ppo (Brax's PPO splits "
                                                  "every batch of unrolls evenly over the envs)")
    return c


def check_explicit_fields(config: Config, explicit: set[str] | frozenset[str]) -> None:
    """Refuses fields set explicitly (e.g. by a command-line flag) that ``config``'s teacher or student never reads.

    Args:
      explicit: dotted names of the fields the user gave, e.g. ``{"meta.candidates"}``.

    Raises:
      ConfigError: a field of :data:`META_ONLY_FIELDS` given for a noise teacher,
        ``teacher.residual`` given for a teacher without a network f, a field
        of :data:`TD3_ONLY_FIELDS` given for a student other than ``td3``, a
        field of :data:`PATHWISE_ONLY_FIELDS` given for a meta teacher with
        another estimator than ``pathwise``, or
        for ``sac``/``ppo`` any field outside :data:`BRAX_FIELDS` (e.g.
        ``teacher.name``, ``sweep``, ``log_every``).
    """
    if config.student.name in BRAX_STUDENTS:
        accepted = BRAX_FIELDS[config.student.name]
        unread = sorted(name for name in explicit if name not in accepted)
        if unread:
            value = config
            for part in unread[0].split("."):
                value = getattr(value, part)
            raise ConfigError(unread[0], value, f"no value for student {config.student.name!r}: Brax's trainer "
                                                f"reads only {accepted}; drop {', '.join(unread)}")
        return
    td3_given = [name for name in TD3_ONLY_FIELDS if name in explicit]
    if td3_given and config.student.name != "td3":
        field_name = td3_given[0].split(".")[1]
        raise ConfigError(td3_given[0], getattr(config.student, field_name),
                          f"no value for the student {config.student.name!r} (only 'td3' reads it); "
                          f"drop {', '.join(td3_given)} or pick --student td3")
    if "teacher.residual" in explicit and config.teacher.name not in NET_TEACHERS:
        raise ConfigError("teacher.residual", config.teacher.residual,
                          f"no value for the teacher {config.teacher.name!r} (only {NET_TEACHERS} have a "
                          "network f to make residual)")
    pathwise_given = [name for name in PATHWISE_ONLY_FIELDS if name in explicit]
    if config.is_meta and pathwise_given and config.teacher.estimator != "pathwise":
        field_name = pathwise_given[0].split(".")[1]
        raise ConfigError(pathwise_given[0], getattr(config.meta, field_name),
                          f"no value for teacher.estimator={config.teacher.estimator!r} (only 'pathwise' reads it); "
                          f"drop {', '.join(pathwise_given)} or pick --teacher-estimator pathwise")
    if config.is_meta:
        return
    given = [name for name in META_ONLY_FIELDS if name in explicit]
    if given:
        sub, field_name = given[0].split(".")
        raise ConfigError(given[0], getattr(getattr(config, sub), field_name),
                          f"no value for the noise teacher {config.teacher.name!r} (only the meta teachers "
                          f"{META_TEACHERS} read it); drop {', '.join(given)} or pick a meta teacher")


def num_chunks(config: Config) -> int:
    """Chunks of ``log_every`` iterations a run executes to spend ``total_steps`` (the only such formula)."""
    return -(-config.num_iterations // config.log_every)


def executed_iterations(config: Config) -> int:
    """Iterations a run really executes: ``num_iterations`` rounded up to whole chunks of ``log_every``."""
    return num_chunks(config) * config.log_every


def evaluates_at(config: Config, iteration: int) -> bool:
    """Whether the log point after ``iteration`` iterations (a multiple of ``log_every``) evaluates.

    True at the run's last log point (:func:`executed_iterations`) and, with
    ``eval_every`` > 0, where the chunk ending here crossed a multiple of
    ``eval_every`` env steps: ``floor(e / eval_every) > floor(e_prev /
    eval_every)`` with e, e_prev the env steps per seed at this and the
    previous log point. Depends on the iteration only, so a resumed run
    evaluates at the same log points as an uninterrupted one.
    """
    if iteration >= executed_iterations(config):
        return True
    if not config.eval_every:
        return False
    steps = iteration * config.steps_per_iteration
    before = (iteration - config.log_every) * config.steps_per_iteration
    return steps // config.eval_every > before // config.eval_every


# ---------------------------------------------------------------------------
# (de)serialization for config.json


def replace_field(config: Config, dotted: str, value: Any) -> Config:
    """``config`` with the field ``dotted`` (e.g. ``"seeds"`` or ``"student.tau"``) set to ``value``; not validated."""
    if "." in dotted:
        sub, name = dotted.split(".")
        return dataclasses.replace(config, **{sub: dataclasses.replace(getattr(config, sub), **{name: value})})
    return dataclasses.replace(config, **{dotted: value})


def program_fields(config: Config) -> dict[str, Any]:
    """:func:`to_dict` without the fields only the host loop reads (metadata ``host``: the budget, the
    evaluation and checkpoint schedule): what the compiled programs depend on. ``total_steps`` stays when
    ``student.lr_decay`` < 1, whose schedule the programs read."""
    out = to_dict(config)
    for f in dataclasses.fields(config):
        if f.metadata.get("host") and not (f.name == "total_steps" and config.student.lr_decay != 1.0):
            del out[f.name]
    return out


def to_dict(config: Config) -> dict[str, Any]:
    """JSON-ready dict of ``config`` (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(d: dict[str, Any], checked: bool = False) -> Config:
    """Inverse of :func:`to_dict`; validated unless ``checked`` (``d`` is the dict of a config this run
    has validated already, e.g. process 0's, handed to every process).

    Raises:
      ConfigError: on unknown fields (names the field) or invalid values.
    """
    subs = {"student": StudentConfig, "teacher": TeacherConfig, "meta": MetaConfig}
    kwargs: dict[str, Any] = {}
    top = {f.name for f in dataclasses.fields(Config)}
    for k, v in d.items():
        if k not in top:
            raise ConfigError(k, v, f"a field of Config: {sorted(top)}")
        if k in subs:
            if not isinstance(v, dict):
                raise ConfigError(k, v, "a mapping")
            names = {f.name for f in dataclasses.fields(subs[k])}
            for kk in v:
                if kk not in names:
                    raise ConfigError(f"{k}.{kk}", v[kk], f"a field of {subs[k].__name__}: {sorted(names)}")
            vv = {kk: tuple(x) if isinstance(x, list) else x for kk, x in v.items()}
            kwargs[k] = subs[k](**vv)
        else:
            kwargs[k] = _tuples(v)
    config = Config(**kwargs)
    return config if checked else validate(config)


def _tuples(x: Any) -> Any:
    """JSON lists back to tuples, recursively (``sweep``: [[field, [values]]] -> ((field, (values,)),))."""
    return tuple(_tuples(i) for i in x) if isinstance(x, list) else x
