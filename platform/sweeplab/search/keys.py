"""Every name sweeplab writes beside Optuna's and MLflow's own data, in one place.

Study attributes let an agent, ``resume`` or ``status`` find everything from the study's
name; trial attributes carry what a trial is (its run, owner, reason, retries); run tags
let status, compare and the registry read a trial back from MLflow.
"""

from sweeplab.tracking.machine import PEAK_GPU, PEAK_RSS

# ------------------------------------------------------------- on the study (user attrs)
ATTR_SPEC = "sweeplab.spec"  # the sweep's spec, as JSON
ATTR_PARENT = "sweeplab.parent_run_id"  # the sweep's MLflow parent run
ATTR_EXPERIMENT = "sweeplab.experiment_id"  # its MLflow experiment
ATTR_BACKEND = "sweeplab.backend"  # which backend runs its trials (catalog.BACKENDS)
ATTR_BACKEND_OPTIONS = "sweeplab.ray_options"  # what a resumed sweep runs with again
# True when a trial's owner is recorded under the claim lock, as the trial is created:
# a running trial without one then lost its worker (claims.Recovery)
ATTR_OWNERS_LOCKED = "sweeplab.owners_locked"
ATTR_STATE = "sweeplab.state"  # the sweep's state (states.SweepState); its parent run shows it
ATTR_TRIALS = "sweeplab.trials"  # the trials it runs to: sweep.trials, or more once extended
ATTR_STOP_REASON = "sweeplab.stop_reason"  # why it stopped asking for trials
ATTR_WARM_START = "sweeplab.warm_start"  # what its warm start took and skipped, as JSON
ATTR_BASELINES = "sweeplab.baselines"  # its scikit-learn baselines (training.baselines)
# the test score of the version it registered last, under the trial's name for it
# (test_acc, test_rmse): what its baselines are held against
ATTR_REGISTERED_SCORE = "sweeplab.registered_score"
# sweep.fuse_trials: the most trials a batch holds since one ran out of memory (halved)
ATTR_BATCH_FITS = "sweeplab.batch_fits"

# ------------------------------------------------------------- on a trial (user attrs)
ATTR_RUN = "mlflow_run_id"  # the trial's MLflow run
ATTR_REASON = "fail_reason"  # why it failed
ATTR_OWNER = "sweeplab.owner"  # host:pid of the worker (or Ray driver) that runs it
ATTR_BATCH = "sweeplab.batch"  # a fused trial: the numbers of its batch's trials, "3,4,5"
ATTR_ATTEMPT = "sweeplab.attempt"  # 0 for a first try, n for the n-th retry
ATTR_RETRY_OF = "sweeplab.retry_of"  # the trial number a retry repeats
ATTR_RETRIED = "sweeplab.retried_as"  # on a failed trial: the number of its retry
ATTR_DEATHS = "sweeplab.deaths"  # how many earlier tries of these params lost their worker
ATTR_EPOCHS = "epochs"  # epochs trained (the best restart's)
ATTR_STD = "value_std"  # the spread of its restarts' values
ATTR_RESTARTS = "restart_values"  # one value per fit (fold × restart)
ATTR_FINAL_PARAMS = "pbt_params"  # a complete PBT trial: the values it ended with
ATTR_TUNE = "sweeplab.ray_trial"  # a PBT trial: its Tune trial id
ATTR_SAME_AS = "sweeplab.same_as"  # drawn again by the sampler: the earlier trial's number
ATTR_PRIOR = "sweeplab.prior_of"  # a warm start's prior trial: "SWEEP#NUMBER" it came from
ATTR_PRIOR_RUN = "sweeplab.prior_run_id"  # and that trial's MLflow run
ATTR_ENQUEUED = "sweeplab.enqueued"  # a configuration of sweep.enqueue: its index there
ATTR_FIT_SECONDS = "fit_seconds"  # seconds inside Lightning's fit, every fit of the trial
# an accuracy's step on the validation split (1/examples), and the validation loss at
# the fits' best epochs (their mean): what breaks a tie between trials (ranking.py)
ATTR_RESOLUTION = "sweeplab.resolution"
ATTR_TIE_LOSS = "sweeplab.tie_loss"
# a trial that went on from the checkpoints of the try it repeats: the epoch it went on at
ATTR_RESUMED_AT = "sweeplab.resumed_at"
# the peak memory of its fits in MiB, as its run's metrics of the same names
ATTR_PEAK_RSS = PEAK_RSS
ATTR_PEAK_GPU = PEAK_GPU

# ---------------------------------------------------------------------- on MLflow runs
TAG_KIND = "sweeplab.kind"  # sweep (a parent run) or train (sweeplab train)
TAG_SWEEP = "sweeplab.sweep"
TAG_BATCH = "sweeplab.batch"  # a fused trial's run: its batch's trial numbers, "3,4,5"
TAG_TRIAL = "sweeplab.trial_number"
TAG_STATE = "sweeplab.state"  # a run: states.TrialState; a parent run: states.SweepState
TAG_REASON = "sweeplab.fail_reason"
TAG_RESTART = "sweeplab.restart"  # a nested run: which restart and fold it is
TAG_FOLD = "sweeplab.fold"
TAG_NODE = "sweeplab.ray_node"  # a Ray trial: the node and host that ran it
TAG_HOST = "sweeplab.host"
TAG_RANKS = "sweeplab.ranks"  # a data-parallel trial: host:pid of each rank, rank 0 first
TAG_BEST_TRIAL = "sweeplab.best_trial"  # on the parent run, once finished
TAG_BEST_RUN = "sweeplab.best_run_id"
TAG_REGISTERED = "sweeplab.registered"  # on the parent run: name/version of its best model
TAG_CURVE = "sweeplab.learning_curve"  # a trial's run: its learning_curve.png is drawn
TAG_SAME_AS = "sweeplab.same_as"  # a trial's run: the earlier trial with the same params
TAG_VALUE = "sweeplab.value"  # on a model version: the trial's objective value
TAG_FINAL = "sweeplab.final"  # on a model version: what sweep.final chose
TAG_MEMBERS = "sweeplab.members"  # an ensemble's fits: their run ids, comma-separated
TAG_WEIGHTS = "sweeplab.weights"  # a top_ensemble's fits: "#<trial> member_<i>: share", ...

CHECKPOINT = "checkpoint/model_state.pt"  # a trial's best weights, in its run's artifacts
# with sweep.final: ensemble or top_ensemble, every fit's best weights too: MEMBERS/member_<i>.pt
MEMBERS = "checkpoint/members"
BEST_EPOCH = "best_epoch"  # a trial run's metric: its best fit's best epoch (0-based)
METRIC_VALUE = "value"  # a trial run's metric: its value, its fits' aggregate
METRIC_DIVERGED = "diverged_fits"  # how many of its fits diverged (and were left out)
# what a trial run gets once, at its end (or failure), not epoch by epoch: a try that goes
# on from an earlier one's checkpoint copies its curves, never these
SUMMARY_METRICS = frozenset(
    {
        METRIC_VALUE,
        ATTR_STD,
        ATTR_EPOCHS,
        METRIC_DIVERGED,
        BEST_EPOCH,
        ATTR_FIT_SECONDS,
        PEAK_RSS,
        PEAK_GPU,
    }
)
TAG_REFIT_RUN = "sweeplab.refit_run"  # a refit version: the run that trained it
TAG_REFIT_EPOCHS = "sweeplab.refit_epochs"  # and for how many epochs
