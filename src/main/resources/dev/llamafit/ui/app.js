// llamafit ui: the plan form (POST /api/plan on every change) and the runs view (polls /api/runs, /api/run, /api/metrics).
'use strict';

const $ = id => document.getElementById(id);
const GiB = 1024 ** 3;
Chart.defaults.animation = false;

function bytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(2)) + ' ' + units[i];
}

function duration(s) {
  if (s == null) return '';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  return 'ETA ' + (h ? h + ' h ' : '') + (h || m ? m + ' min ' : '') + sec + ' s';
}

async function getJson(url, init) {
  const r = await fetch(url, init);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

// ---- views ----
function showView() {
  const runs = location.hash.startsWith('#runs');
  $('view-plan').hidden = runs;
  $('view-runs').hidden = !runs;
  $('tab-plan').classList.toggle('active', !runs);
  $('tab-runs').classList.toggle('active', runs);
  const name = runs && location.hash.startsWith('#runs/') ? decodeURIComponent(location.hash.slice(6)) : null;
  if (runs) selectRun(name);
}
window.addEventListener('hashchange', showView);

// ---- plan view ----
const COLORS = { weights: '#4e79a7', gradients: '#f28e2b', optimizer: '#e15759', activations: '#76b7b2',
  workspace: '#59a14f', master_weights: '#edc948', kv_cache: '#b07aa1', offloaded_host: '#ff9da7', offloaded_disk: '#9c755f' };
let planSeq = 0, planChart = null, configFileText = '';

function planArgs() {
  const a = [];
  const v = id => $(id).value.trim();
  const pasted = configText();
  a.push('--model', pasted ? 'config.json' : v('model'));
  const rt = v('runtime');
  a.push('--runtime', rt);
  if (v('memory')) a.push('--memory', v('memory')); else a.push('--device', v('device'));
  const inference = $('inference').checked;
  if (!inference) {
    a.push('--method', v('method'));
    if (v('method') !== 'full') {
      a.push('--lora-r', v('lora-r'));
      if (v('lora-targets') && v('lora-targets') !== 'q_proj,v_proj') a.push('--lora-targets', v('lora-targets'));
    }
    a.push('--optimizer', v('optimizer'));
    if ($('gradient-checkpointing').checked) a.push('--gradient-checkpointing');
    if (v('grad-accum') !== '1') a.push('--grad-accum', v('grad-accum'));
  }
  a.push('--precision', v('precision'));
  if (v('attention')) a.push('--attention', v('attention'));
  a.push('--batch-size', v('batch-size'), '--seq-len', v('seq-len'));
  if (inference) a.push('--inference', '--max-new-tokens', v('max-new-tokens'));
  if (rt === 'pytorch') {
    if (v('base-dtype')) a.push('--base-dtype', v('base-dtype'));
    if (v('zero') !== '0') a.push('--zero', v('zero'));
    if (v('workers') !== '1') a.push('--workers', v('workers'));
    if (v('offload') !== 'none') a.push('--offload', v('offload'));
    if (v('sharding')) a.push('--sharding', v('sharding'));
    if (v('stack') !== 'hf') a.push('--stack', v('stack'));
  }
  for (const t of v('extra').split(/\s+/)) if (t) a.push(t);
  a.push('--max-batch', '--max-seq-len');
  if (!inference) a.push('--recommend');
  return a;
}

function configText() { return $('config-text').value.trim() || configFileText; }

async function replan() {
  const seq = ++planSeq;
  const args = planArgs();
  const result = $('plan-result');
  result.dataset.state = 'pending';
  $('pytorch-only').disabled = $('runtime').value !== 'pytorch';
  $('plan-command').textContent = 'llamafit plan ' + args.join(' ');
  try {
    const body = { args };
    if (configText()) body.config = configText();
    const plan = await getJson('/api/plan', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (seq !== planSeq) return; // a newer change is on its way
    $('plan-error').hidden = true;
    drawPlan(plan);
    result.dataset.state = 'done';
  } catch (e) {
    if (seq !== planSeq) return;
    $('plan-error').textContent = e.message;
    $('plan-error').hidden = false;
    result.dataset.state = 'error';
  }
}

function drawPlan(p) {
  const d = p.device;
  $('peak').textContent = bytes(d.peak_bytes) + ' at ' + d.peak_phase + ' of ' + bytes(d.memory_bytes) + ' (' + d.name + ')';
  $('peak').dataset.bytes = d.peak_bytes;
  $('fits').textContent = p.fits ? 'fits, headroom ' + bytes(d.headroom_bytes) : 'DOES NOT FIT (' + bytes(-d.headroom_bytes) + ' over)';
  $('fits').className = p.fits ? 'fits' : 'nofit';
  $('max-batch').textContent = p.max_batch_size ?? '–';
  $('max-seq-len').textContent = p.max_seq_len ?? '–';
  const phases = Object.keys(p.device_bytes_by_phase);
  const comps = p.components.filter(c => c.column === 'device' && c.bytes > 0);
  const shade = {};
  const datasets = comps.map(c => {
    const n = shade[c.category] = (shade[c.category] || 0) + 1;
    const base = COLORS[c.category] || '#888';
    return { label: c.name, data: phases.map(f => c.bytes_by_phase[f] / GiB), backgroundColor: base + (n % 2 ? 'ff' : 'aa'), stack: 'm' };
  });
  const data = { labels: phases, datasets };
  if (!planChart) {
    planChart = new Chart($('chart-plan'), { type: 'bar', data, options: { maintainAspectRatio: false,
      plugins: { title: { display: true, text: 'device memory by component and phase (GiB)' }, legend: { position: 'right', labels: { boxWidth: 10, font: { size: 10 } } } },
      scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: 'GiB' } } } } });
  } else { planChart.data = data; planChart.update(); }
  const tbody = $('recs').tBodies[0];
  tbody.replaceChildren();
  (p.recommendations || []).forEach((r, i) => {
    const tr = tbody.insertRow();
    for (const t of [i + 1, '×' + r.slowdown.toFixed(2), bytes(r.peak_bytes), r.steps.join('; ')]) tr.insertCell().textContent = t;
  });
  if (!(p.recommendations || []).length) tbody.insertRow().insertCell().textContent = p.mode === 'inference' ? 'not searched for generation' : 'none';
  $('plan-notes').replaceChildren(...(p.notes || []).map(n => { const li = document.createElement('li'); li.textContent = n; return li; }));
}

async function initPlan() {
  const o = await getJson('/api/options');
  for (const m of o.models) $('model').add(new Option(m, m, false, m === 'llama-3.1-8b'));
  for (const d of o.devices) $('device').add(new Option(d.name + ' (' + bytes(d.memory_bytes) + ')', d.name));
  $('runtime').addEventListener('change', () => {
    // A GPU for PyTorch, the CPU for the engine, unless the user chose otherwise since.
    $('device').value = $('runtime').value === 'pytorch' ? (o.devices.find(d => d.gpu) || {}).name : 'cpu';
  });
  $('config-file').addEventListener('change', async () => {
    const f = $('config-file').files[0];
    configFileText = f ? await f.text() : '';
    replan();
  });
  // Typing redraws at once ('input'); a select, a checkbox, or a field emptied at once ('change') too.
  for (const el of $('plan-form').querySelectorAll('input, select, textarea'))
    if (el.type !== 'file') {
      el.addEventListener('change', replan);
      if (el.tagName !== 'SELECT' && el.type !== 'checkbox') el.addEventListener('input', replan);
    }
  $('plan-form').addEventListener('submit', e => e.preventDefault());
  replan();
}

// ---- runs view ----
let selected = null, run = null, pollTimer = null;

function lineChart(canvas, title, series) {
  return new Chart(canvas, { type: 'line', data: { datasets: series.map(([label, color]) => ({ label, data: [], borderColor: color,
    backgroundColor: color, pointRadius: label === 'eval loss' ? 3 : 0, borderWidth: 1.5, showLine: true })) },
    options: { maintainAspectRatio: false, parsing: false, plugins: { title: { display: true, text: title } },
      scales: { x: { type: 'linear', title: { display: true, text: 'step' } } } } });
}

function newRunState(name) {
  for (const c of run ? run.charts : []) c.destroy();
  if (run && run.memChart) run.memChart.destroy();
  run = { name, from: 0, line: 1, points: 0, malformed: [], charts: [
    lineChart($('chart-loss'), 'loss', [['train loss', '#4e79a7'], ['eval loss', '#e15759']]),
    lineChart($('chart-lr'), 'learning rate', [['lr', '#59a14f']]),
    lineChart($('chart-tps'), 'tokens/s', [['tokens/s', '#f28e2b']])], memChart: null, memoryShown: false };
  $('run-points').textContent = '0';
  $('run-points').dataset.count = '0';
  $('run-malformed').hidden = true;
}

function selectRun(name) {
  if (name === selected && run) return;
  selected = name;
  $('run-none').hidden = !!name;
  $('run-body').hidden = !name;
  for (const li of $('run-list').children) li.classList.toggle('selected', li.dataset.name === name);
  if (name) { newRunState(name); $('run-title').textContent = name; pollRun(); }
}

const finite = v => typeof v === 'number' && isFinite(v);

async function pollRun() {
  if (!run || run.busy) return; // one poll at a time, or two would read the same lines
  const r = run;
  r.busy = true;
  try {
    const m = await getJson('/api/metrics?run=' + encodeURIComponent(r.name) + '&from=' + r.from + '&line=' + r.line);
    if (r !== run) return;
    if (m.reset) { newRunState(r.name); return; }
    const [loss, lr, tps] = run.charts;
    for (const e of m.entries) {
      if (e.event) continue;
      if (finite(e.loss)) loss.data.datasets[0].data.push({ x: e.step, y: e.loss });
      if (finite(e.eval_loss)) loss.data.datasets[1].data.push({ x: e.step, y: e.eval_loss });
      if (finite(e.lr)) lr.data.datasets[0].data.push({ x: e.step, y: e.lr });
      if (finite(e.tokens_per_s)) tps.data.datasets[0].data.push({ x: e.step, y: e.tokens_per_s });
      run.points++;
    }
    if (m.entries.length) for (const c of run.charts) c.update('none');
    run.malformed.push(...m.malformed);
    $('run-malformed').hidden = !run.malformed.length;
    if (run.malformed.length) {
      $('run-malformed').hidden = false;
      $('run-malformed').textContent = run.malformed.map(b => 'metrics.jsonl line ' + b.line + ' is malformed: ' + b.error + ' — ' + b.text).join('\n');
    }
    run.from = m.next;
    run.line = m.next_line;
    $('run-points').textContent = run.points;
    $('run-points').dataset.count = run.points;
    const d = await getJson('/api/run?name=' + encodeURIComponent(r.name));
    if (r === run) drawRunDetails(d);
  } catch (e) {
    $('run-malformed').hidden = false;
    $('run-malformed').textContent = e.message;
  } finally { r.busy = false; }
}

function drawRunDetails(d) {
  $('run-status').textContent = d.status;
  $('run-status').className = 'status-' + d.status;
  $('run-step').textContent = d.step < 0 ? '0' : d.step;
  $('run-total').textContent = d.total_steps < 0 ? '?' : d.total_steps;
  $('run-progress').max = Math.max(1, d.total_steps);
  $('run-progress').value = Math.max(0, d.step);
  $('run-eta').textContent = d.status === 'running' ? duration(d.eta_s) : '';
  const tbody = $('run-options').tBodies[0];
  tbody.replaceChildren();
  const opts = d.run_info ? Object.assign({ total_steps: d.run_info.total_steps, ranks: d.run_info.ranks }, d.run_info.options) : {};
  for (const [k, v] of Object.entries(opts)) { const tr = tbody.insertRow(); tr.insertCell().textContent = k; tr.insertCell().textContent = v; }
  if (!d.run_info) tbody.insertRow().insertCell().textContent = 'no run.json (a run started before llamafit ui existed)';
  // The plan from the start (plan.json); the measured peaks once the run has ended (memory.json).
  const mem = d.memory || (d.plan && Object.assign({ measured_peak_bytes: {}, measured_total_peak_bytes: 0 }, d.plan));
  const shown = d.memory ? 'measured' : 'planned';
  if (mem && run.memoryShown !== shown) {
    run.memoryShown = shown;
    if (run.memChart) run.memChart.destroy();
    const cats = [...new Set([...Object.keys(mem.planned_bytes || {}), ...Object.keys(mem.measured_peak_bytes || {})])];
    run.memChart = new Chart($('chart-memory'), { type: 'bar', data: { labels: cats.concat(['total']), datasets: [
      { label: 'planned', backgroundColor: '#4e79a7', data: cats.map(c => (mem.planned_bytes[c] || 0) / 2 ** 20).concat([mem.planned_total_bytes / 2 ** 20]) },
      { label: 'measured peak', backgroundColor: '#f28e2b', data: cats.map(c => (mem.measured_peak_bytes[c] || 0) / 2 ** 20).concat([mem.measured_total_peak_bytes / 2 ** 20]) }] },
      options: { maintainAspectRatio: false, plugins: { title: { display: true, text: 'memory by category: planned vs measured (MiB)' } } } });
    $('memory-note').textContent = d.memory ? '' : 'measured peaks (memory.json) are written when the run ends';
  } else if (!mem) $('memory-note').textContent = 'planned vs measured memory (memory.json) is written when the run ends';
}

async function pollList() {
  try {
    const l = await getJson('/api/runs');
    $('runs-root').textContent = l.root;
    const ul = $('run-list');
    ul.replaceChildren(...l.runs.map(r => {
      const li = document.createElement('li');
      li.dataset.name = r.name;
      li.classList.toggle('selected', r.name === selected);
      li.innerHTML = '<b></b><br><span></span>';
      li.firstChild.textContent = r.name;
      li.lastChild.textContent = r.status + ' · step ' + Math.max(0, r.step) + (r.total_steps > 0 ? ' / ' + r.total_steps : '');
      li.lastChild.className = 'status-' + r.status;
      li.onclick = () => { location.hash = '#runs/' + encodeURIComponent(r.name); };
      return li;
    }));
  } catch (e) { $('runs-root').textContent = e.message; }
}

function poll() {
  if (!$('view-runs').hidden) { pollList(); pollRun(); }
}

initPlan();
showView();
pollList();
pollTimer = setInterval(poll, 1000);
