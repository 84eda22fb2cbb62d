// The progress panel: the stage in words, a bar, the elapsed time and an estimate of the time
// left from the rate at which progress has been rising.

// Words for every stage a job shows (recon.progress.Stage, service.jobs.states.JobStage and the
// final statuses; tests/web/test_labels.py holds this list to them) and for job error codes.
const STAGES = {
  queued: 'Waiting for a free worker',
  requeued: 'Restarting on another worker',
  starting: 'Starting',
  load: 'Reading the points',
  clean: 'Cleaning the scan',
  normals: 'Estimating normals',
  fit: 'Learning the surface',
  poisson: 'Solving for the surface',
  extract: 'Building the mesh',
  metrics: 'Measuring the quality',
  export: 'Writing the files',
  upload: 'Saving the results',
  succeeded: 'Finished',
  failed: 'Failed',
  canceled: 'Canceled',
};

const FAILURES = {
  canceled: 'The job was canceled.',
  worker_lost: 'The machine running the job stopped answering, several times. Try again later.',
  no_gpu: 'This job asked for a GPU, but none is available.',
};

export function stageWords(stage) {
  return STAGES[stage] || (stage ? stage[0].toUpperCase() + stage.slice(1).replace(/_/g, ' ') : '');
}

export function failureWords(error) {
  if (!error) return 'The job failed.';
  return FAILURES[error.code] || `The job failed: ${error.message}`;
}

export function duration(s) {
  if (!Number.isFinite(s) || s < 0) return '';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Remaining seconds from (time s, percent) samples and the time now: the mean rate over the
 *  last minute, measured up to now, so that the estimate grows while progress stalls. */
export function estimateRemaining(samples, now) {
  const recent = samples.filter(([t]) => now - t <= 60);
  if (recent.length < 2) return null;
  const [t0, p0] = recent[0];
  const p1 = recent[recent.length - 1][1];
  if (now - t0 < 2 || p1 - p0 < 1 || p1 >= 100) return null;
  return ((100 - p1) * (now - t0)) / (p1 - p0);
}

export class ProgressPanel {
  constructor(root) {
    this.root = root;
    this.el = (id) => root.querySelector(`#${id}`);
    this.samples = [];
    this.job = null;
    this.timer = null;
  }

  /** Show a job (a JobPublic or a progress event merged into one). */
  update(job) {
    const first = !this.job || this.job.id !== job.id;
    if (first) this.samples = [];
    this.job = { ...(first ? {} : this.job), ...job };
    const j = this.job;
    this.root.hidden = false;
    this.el('job-name').textContent = j.input ? j.input.name : '';
    const pct = j.status === 'succeeded' ? 100 : Number(j.progress || 0);
    this.el('stage').textContent = `${stageWords(j.stage)} — ${Math.floor(pct)} %`;
    this.el('bar-fill').style.width = `${pct}%`;
    this.el('bar').setAttribute('aria-valuenow', String(Math.floor(pct)));
    this.el('bar').dataset.status = j.status;
    if (j.status === 'running') this.samples.push([Date.now() / 1000, pct]);
    const final = ['succeeded', 'failed', 'canceled'].includes(j.status);
    this.el('cancel').hidden = final;
    this.el('cancel').disabled = Boolean(j.cancel_requested);
    this.el('job-error').textContent = j.status === 'failed' || j.status === 'canceled'
      ? failureWords(j.error) : '';
    this.tick();
    clearInterval(this.timer);
    if (!final) this.timer = setInterval(() => this.tick(), 1000);
  }

  tick() {
    const j = this.job;
    if (!j) return;
    const now = Date.now() / 1000;
    const start = Date.parse(j.started_at || j.created_at) / 1000;
    const end = j.finished_at ? Date.parse(j.finished_at) / 1000 : now;
    const label = j.started_at ? 'Running for' : 'Waiting for';
    this.el('elapsed').textContent = j.finished_at ? `Took ${duration(end - start)}.`
      : `${label} ${duration(end - start)}.`;
    const left = j.status === 'running' ? estimateRemaining(this.samples, now) : null;
    this.el('eta').textContent = left === null ? '' : `About ${duration(Math.max(1, left))} left.`;
  }

  hide() {
    clearInterval(this.timer);
    this.job = null;
    this.root.hidden = true;
  }
}
