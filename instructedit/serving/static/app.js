// instructedit's web page: plain JS over the service's own API (/v1/...), no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { session: null, input: null, methods: [], turns: [], lastJob: null, painted: false };

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const message = body?.error?.message || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function showError(message) { $("error").textContent = message || ""; }
function setStatus(message) { $("status").textContent = message || ""; }

async function setInput(blob) {
  state.input = blob;
  $("input-img").src = URL.createObjectURL(blob);
  await $("input-img").decode().catch(() => {});
  resetMask();
  $("submit").disabled = !blob;
}

function resetMask() {
  const canvas = $("mask-canvas"), img = $("input-img");
  canvas.width = img.naturalWidth || 1;
  canvas.height = img.naturalHeight || 1;
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  state.painted = false;
}

function showResult(job) {
  state.lastJob = job;
  const has = job && job.state === "done";
  $("result-img").src = has ? `/v1/jobs/${job.id}/image` : "";
  $("before-img").src = has ? `/v1/jobs/${job.id}/input` : "";
  $("download").hidden = !has;
  if (has) { $("download").href = `/v1/jobs/${job.id}/image`; $("download").download = `instructedit-${job.id}.png`; }
  $("next").disabled = !has;
}

function describe(job) {
  const r = job.request;
  const words = r.instruction || `${r.source || ""} → ${r.target || ""}`;
  return `${r.method}: “${words}”`;
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren(...state.turns.map((job, i) => {
    const item = document.createElement("li");
    if (job.state === "done") {
      const thumb = document.createElement("img");
      thumb.src = `/v1/jobs/${job.id}/image`;
      thumb.alt = `turn ${i + 1}`;
      item.append(thumb);
    }
    const seconds = job.record ? ` · ${job.record.wall_time_s.toFixed(2)} s` : "";
    item.append(`${describe(job)} — ${job.state}${seconds}`);
    item.title = JSON.stringify(job.record || job.error || {}, null, 1);
    return item;
  }));
  $("undo").disabled = state.turns.length === 0;
}

async function loadSession() {
  let id = localStorage.getItem("instructedit.session");
  let session = null;
  if (id) session = await api(`/v1/sessions/${id}`).catch(() => null);
  if (!session) {
    session = await api("/v1/sessions", { method: "POST" });
    localStorage.setItem("instructedit.session", session.id);
  }
  state.session = session.id;
  state.turns = session.turns;
  renderHistory();
  const last = state.turns[state.turns.length - 1];
  if (last) {
    await setInput(await (await fetch(`/v1/jobs/${last.id}/input`)).blob());
    showResult(last);
  }
}

function methodInfo() { return state.methods.find((m) => m.name === $("method").value); }

function renderMethod() {
  const m = methodInfo();
  $("method-help").textContent = m.description;
  const needsInstruction = m.needs.includes("instruction");
  $("instruction-row").hidden = false;
  $("source-row").hidden = needsInstruction;
  $("target-row").hidden = needsInstruction;
  $("params").replaceChildren(...m.params.map((p) => {
    const label = document.createElement("label");
    label.textContent = `${p.name} (${p.help})`;
    const input = document.createElement(p.choices ? "select" : "input");
    input.dataset.param = p.name;
    input.dataset.type = p.type;
    if (p.choices) {
      for (const c of ["", ...p.choices]) input.append(new Option(c === "" ? `default (${p.default})` : c, c));
    } else {
      input.type = p.type === "bool" ? "checkbox" : (p.type === "str" ? "text" : "number");
      if (p.minimum !== null && p.minimum !== undefined) input.min = p.minimum;
      if (p.maximum !== null && p.maximum !== undefined) input.max = p.maximum;
      if (p.type === "float") input.step = "any";
      input.placeholder = `model default (method default ${p.default})`;
    }
    label.append(input);
    return label;
  }));
}

function chosenParams() {
  const params = {};
  for (const input of $("params").querySelectorAll("[data-param]")) {
    if (input.type === "checkbox") { if (input.checked) params[input.dataset.param] = true; continue; }
    if (input.value === "") continue;
    params[input.dataset.param] = input.dataset.type === "int" ? parseInt(input.value, 10)
      : input.dataset.type === "float" ? parseFloat(input.value) : input.value;
  }
  return params;
}

function maskBlob() {
  return new Promise((resolve) => {
    if (!state.painted) return resolve(null);
    const src = $("mask-canvas");
    const out = document.createElement("canvas");
    out.width = src.width; out.height = src.height;
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(src, 0, 0);
    out.toBlob(resolve, "image/png");
  });
}

async function submit() {
  showError(""); setStatus("");
  const form = new FormData();
  form.append("image", state.input, "input.png");
  const mask = await maskBlob();
  if (mask) form.append("mask", mask, "mask.png");
  const m = methodInfo();
  const fields = { instruction: $("instruction").value, method: m.name, seed: $("seed").value || "0",
                   params: JSON.stringify(chosenParams()), session: state.session };
  if (!m.needs.includes("instruction")) { fields.source = $("source").value; fields.target = $("target").value; }
  if ($("ground").value) fields.ground = $("ground").value;
  for (const [k, v] of Object.entries(fields)) if (v !== "" && v !== undefined) form.append(k, v);
  $("submit").disabled = true;
  let job;
  try {
    job = await api("/v1/edits", { method: "POST", body: form });
  } catch (error) {
    showError(error.message);
    $("submit").disabled = false;
    return;
  }
  follow(job.id);
}

function follow(jobId) {
  const bar = $("progress");
  bar.hidden = false; bar.value = 0;
  setStatus("queued");
  const events = new EventSource(`/v1/jobs/${jobId}/events`);
  events.addEventListener("job", async (event) => {
    const job = JSON.parse(event.data);
    const p = job.progress || {};
    if (p.total) bar.value = p.step / p.total;
    setStatus(job.state === "running" && p.total ? `running: step ${p.step} of ${p.total}` : job.state);
    if (["done", "failed", "cancelled"].includes(job.state)) {
      events.close();
      bar.hidden = true;
      $("submit").disabled = false;
      if (job.state === "done") {
        showResult(job);
        setStatus(`done in ${job.record.wall_time_s.toFixed(2)} s (${job.record.unet_calls} UNet calls)`);
      } else {
        showError(job.error || job.state);
      }
      const session = await api(`/v1/sessions/${state.session}`);
      state.turns = session.turns;
      renderHistory();
    }
  });
  events.onerror = () => { events.close(); showError("lost the connection to the service"); $("submit").disabled = false; };
}

async function useResult() {
  if (!state.lastJob) return;
  const blob = await (await fetch(`/v1/jobs/${state.lastJob.id}/image`)).blob();
  await setInput(blob);
  showResult(null);
  setStatus("the result is the next turn's input");
}

async function undo() {
  showError("");
  try {
    const answer = await api(`/v1/sessions/${state.session}/undo`, { method: "POST" });
    const undoneInput = await (await fetch(`/v1/jobs/${answer.undone}/input`)).blob();
    state.turns = answer.turns;
    renderHistory();
    await setInput(undoneInput);
    showResult(null);
    setStatus("undid the last turn");
  } catch (error) { showError(error.message); }
}

async function newSession() {
  localStorage.removeItem("instructedit.session");
  state.input = null; state.turns = [];
  $("input-img").removeAttribute("src");
  showResult(null);
  $("submit").disabled = true;
  await loadSession();
  setStatus("new session");
}

function setupDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) setInput(e.dataTransfer.files[0]).then(() => showResult(null));
  });
  $("file").addEventListener("change", () => {
    if ($("file").files[0]) setInput($("file").files[0]).then(() => showResult(null));
  });
}

function setupBrush() {
  const canvas = $("mask-canvas");
  let down = false;
  $("brush").addEventListener("change", () => canvas.classList.toggle("painting", $("brush").checked));
  const paint = (e) => {
    if (!down) return;
    const box = canvas.getBoundingClientRect();
    const x = (e.clientX - box.left) / box.width * canvas.width, y = (e.clientY - box.top) / box.height * canvas.height;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.beginPath(); ctx.arc(x, y, Math.max(2, canvas.width / 20), 0, 2 * Math.PI); ctx.fill();
    state.painted = true;
  };
  canvas.addEventListener("pointerdown", (e) => { down = true; paint(e); });
  canvas.addEventListener("pointermove", paint);
  window.addEventListener("pointerup", () => { down = false; });
  $("clear-mask").addEventListener("click", resetMask);
}

async function init() {
  const listed = await api("/v1/methods");
  state.methods = listed.methods;
  for (const m of state.methods) $("method").append(new Option(m.name, m.name));
  for (const name of Object.keys(listed.grounders)) $("ground").append(new Option(name, name));
  renderMethod();
  $("method").addEventListener("change", renderMethod);
  const examples = await api("/v1/examples");
  for (const ex of examples) {
    const img = document.createElement("img");
    img.src = ex.url; img.alt = ex.instruction; img.title = ex.instruction;
    img.addEventListener("click", async () => {
      await setInput(await (await fetch(ex.url)).blob());
      showResult(null);
      $("instruction").value = ex.instruction;
    });
    $("examples").append(img);
  }
  $("slider").addEventListener("input", () => { $("before-clip").style.width = `${$("slider").value}%`; });
  $("submit").addEventListener("click", submit);
  $("next").addEventListener("click", useResult);
  $("undo").addEventListener("click", undo);
  $("new").addEventListener("click", newSession);
  setupDrop();
  setupBrush();
  await loadSession();
  document.body.dataset.ready = "true";
}

init().catch((error) => showError(error.message));
