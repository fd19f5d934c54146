// The DICOM viewer of CPMS: an anywidget front end that draws a series on a <canvas>.
// Bundled by esbuild (see the Makefile) into cpms_widgets/viewers/static/dicom_viewer.js.
//
// The same module runs in JupyterLab (anywidget) and in Panel (pn.custom.AnyWidgetComponent),
// so it uses only what both hosts offer: synced traits (model.get / set / save_changes / on).
// No widget messages and no binary buffers: the series description and every frame come over
// HTTP from the store, with the image-scoped grant in the X-CPMS-Grant header, never in a URL.
//
// Frames arrive as raw decoded pixels (uint8 / uint16 / int16, little-endian, RGB interleaved
// when samples_per_pixel is 3). Window/level happens here, on those raw values: one lookup
// table from stored value to grey, rebuilt when the window moves and applied to the frame in a
// single pass, so a drag costs no request. Frames are kept in a bounded cache.
//
// Frames come from the store's batch route (.../slices/{selection}): one request carries many
// frames, each as [slice number, byte length] (two little-endian uint32) and its pixels, read
// as the answer streams in. On opening, the series description and the first slice are asked
// for at once and the first slice comes alone; then the rest of the series comes in batches,
// outward from the slice on show (three ahead in the direction of scrolling for one behind), two
// batches at a time. A slice wanted now that no batch carries is asked for alone, at once.

const HEADER = "X-CPMS-Grant";
//: presets for CT, in Hounsfield units: [centre, width]
const CT_PRESETS = {
  brain: [40, 80],
  lung: [-600, 1500],
  bone: [400, 1800],
  abdomen: [40, 400],
  mediastinum: [50, 350],
};
const DEFAULT_CINE_FPS = 15;
//: frames kept in memory (bytes); 300 CT slices of 512 x 512 x 2 bytes is 150 MiB
const CACHE_BYTES = 256 * 1024 * 1024;
//: a batch: about this many bytes, and at most MAX_BATCH slices (the store's limit is 64)
const BATCH_BYTES = 8 * 1024 * 1024;
const MAX_BATCH = 64;
//: batch requests in flight at once (a slice wanted now is asked for on top of these)
const BATCHES_IN_FLIGHT = 2;
//: slices fetched ahead (in the direction of scrolling) for each one behind
const AHEAD_PER_BEHIND = 3;
const ZOOM_STEP = 1.25;
//: largest stored-value range mapped through a lookup table (16-bit data always is)
const MAX_LUT = 1 << 20;

function typedFrame(buffer, inst) {
  const bits = inst.bits_allocated || 16;
  const signed = inst.pixel_representation === 1;
  if (bits <= 8) return signed ? new Int8Array(buffer) : new Uint8Array(buffer);
  if (bits <= 16) return signed ? new Int16Array(buffer) : new Uint16Array(buffer);
  return signed ? new Int32Array(buffer) : new Uint32Array(buffer);
}

function minMax(data) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

// The batch URL of some slices (numbers from 0 in display order), below meta_url.
function slicesUrl(model, numbers) {
  const base = (model.get("meta_url") || "").replace(/\/meta\/?$/, "");
  return `${base}/slices/${selection(numbers)}`;
}

// "3,4,5,6,2,10" -> "3-6,2,10": runs of consecutive numbers (up or down) as ranges
function selection(numbers) {
  const parts = [];
  for (let k = 0; k < numbers.length; ) {
    let j = k;
    const step = numbers[k + 1] - numbers[k];
    if (step === 1 || step === -1) {
      while (j + 1 < numbers.length && numbers[j + 1] - numbers[j] === step) j++;
    }
    parts.push(j > k ? `${numbers[k]}-${numbers[j]}` : String(numbers[k]));
    k = j + 1;
  }
  return parts.join(",");
}

// Read a batch answer as it streams in: onRecord(sliceNumber, ArrayBuffer) per frame.
async function readRecords(resp, onRecord) {
  const reader = resp.body.getReader();
  const head = new Uint8Array(8);
  const view = new DataView(head.buffer);
  let headFill = 0;
  let frame = null;
  let fill = 0;
  let number = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    let off = 0;
    while (off < value.length) {
      if (!frame) {
        const take = Math.min(8 - headFill, value.length - off);
        head.set(value.subarray(off, off + take), headFill);
        headFill += take;
        off += take;
        if (headFill === 8) {
          headFill = 0;
          number = view.getUint32(0, true);
          frame = new Uint8Array(view.getUint32(4, true));
          fill = 0;
        }
      } else {
        const take = Math.min(frame.length - fill, value.length - off);
        frame.set(value.subarray(off, off + take), fill);
        fill += take;
        off += take;
      }
      if (frame && fill === frame.length) {
        onRecord(number, frame.buffer);
        frame = null;
      }
    }
  }
  if (frame || headFill) throw new Error("a batch of frames was cut short");
}

function button(text, title, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.title = title;
  b.className = cls;
  b.style.cssText =
    "font:12px sans-serif;padding:2px 7px;border:1px solid #777;border-radius:4px;" +
    "background:#2b2b2b;color:#eee;cursor:pointer";
  return b;
}

// the viewer's height: a CSS length from the notebook widget, pixels (a number) from Panel
function cssHeight(model) {
  const h = model.get("height");
  if (typeof h === "number" && h > 0) return `${h}px`;
  return typeof h === "string" && h ? h : "600px";
}

export default {
  render({ model, el }) {
    const started = performance.now();
    let opened = started; // when the series on show was opened
    const root = document.createElement("div");
    root.className = "cpms-dicom-viewer";
    root.tabIndex = 0;
    // JupyterLab (Lumino) leaves keys pressed in here alone: arrows and space are ours
    root.dataset.lmSuppressShortcuts = "true";
    root.style.cssText =
      "position:relative;display:flex;flex-direction:column;width:100%;background:#000;" +
      "border:1px solid #444;outline:none;user-select:none;color:#eee;font:12px sans-serif";
    root.style.height = cssHeight(model);

    // -- toolbar -------------------------------------------------------------------------
    const bar = document.createElement("div");
    bar.className = "cpms-dicom-toolbar";
    bar.style.cssText =
      "display:flex;flex-wrap:wrap;gap:4px;align-items:center;padding:4px;background:#1b1b1b";
    const seriesSelect = document.createElement("select");
    seriesSelect.className = "cpms-dicom-series";
    seriesSelect.title = "Series of this case";
    seriesSelect.style.cssText = "max-width:320px;font:12px sans-serif";
    const modes = {};
    for (const [mode, text, title] of [
      ["wl", "W/L", "Drag to change window (left-right) and level (up-down)"],
      ["pan", "Pan", "Drag to move the image (also: ctrl-drag or right-drag)"],
      ["measure", "Measure", "Drag to measure a length"],
    ]) {
      modes[mode] = button(text, title, `cpms-dicom-mode cpms-dicom-mode-${mode}`);
      modes[mode].dataset.mode = mode;
    }
    const zoomIn = button("+", "Zoom in", "cpms-dicom-zoom-in");
    const zoomOut = button("\u2212", "Zoom out", "cpms-dicom-zoom-out");
    const reset = button("Reset", "Fit the image, default window", "cpms-dicom-reset");
    const clear = button("Clear", "Remove the measurements", "cpms-dicom-clear");
    const play = button("\u25b6", "Play / pause (space)", "cpms-dicom-play");
    const presets = document.createElement("span");
    presets.className = "cpms-dicom-presets";
    presets.style.cssText = "display:none;gap:3px";
    for (const name of Object.keys(CT_PRESETS)) {
      const b = button(name, `CT window: ${CT_PRESETS[name].join(" / ")}`, "cpms-dicom-preset");
      b.dataset.preset = name;
      presets.appendChild(b);
    }
    presets.style.display = "none";
    bar.append(seriesSelect, ...Object.values(modes), zoomIn, zoomOut, reset, clear, play, presets);

    // -- image ------------------------------------------------------------------------------
    const stage = document.createElement("div");
    stage.style.cssText = "position:relative;flex:1;min-height:0;overflow:hidden";
    const canvas = document.createElement("canvas");
    canvas.className = "cpms-dicom-canvas";
    canvas.style.cssText = "position:absolute;inset:0;width:100%;height:100%;touch-action:none";
    const info = document.createElement("div");
    info.className = "cpms-dicom-info";
    info.style.cssText =
      "position:absolute;left:6px;top:4px;pointer-events:none;white-space:pre;" +
      "text-shadow:0 0 3px #000";
    const status = document.createElement("div");
    status.className = "cpms-dicom-status";
    status.style.cssText = "position:absolute;left:6px;bottom:4px;pointer-events:none";
    status.textContent = "Loading series\u2026";
    stage.append(canvas, info, status);

    const slider = document.createElement("input");
    slider.type = "range";
    slider.className = "cpms-dicom-slider";
    slider.min = "0";
    slider.max = "0";
    slider.value = "0";
    slider.style.cssText = "width:calc(100% - 8px);margin:4px";
    root.append(bar, stage, slider);
    el.appendChild(root);

    // -- state ----------------------------------------------------------------------------
    let destroyed = false;
    let generation = 0; // bumps when a new series opens: late responses of the old are dropped
    let meta = null;
    let slices = []; // [{inst, n}] in display order
    let current = 0;
    let direction = 1;
    let mode = "wl";
    let wc = 40;
    let ww = 400;
    let zoom = 1; // screen pixels per image pixel, relative to fit
    let panX = 0; // screen pixels
    let panY = 0;
    let playing = null;
    let lutKey = "";
    let lut = null;
    let measures = []; // [{slice, x0, y0, x1, y1}] in image pixels
    let drawing = null;
    let firstFrameSeen = false;
    let draws = 0;
    const cache = new Map(); // key -> {data, lo, hi, bytes}; insertion order = recency
    let cacheBytes = 0;
    const inflight = new Map(); // key -> {promise, resolve, reject, bytes}
    let inflightBytes = 0;
    let active = 0; // batch requests under way
    const offscreen = document.createElement("canvas");
    let imageData = null;

    const grant = () => model.get("grant") || "";
    const keyOf = (s) => `${s.inst.sop_uid}/${s.n}`;

    function setStatus(text, isError) {
      status.textContent = text;
      status.style.color = isError ? "#f66" : "#eee";
      if (isError) root.dataset.error = text;
    }

    function remember(key, entry) {
      if (cache.has(key)) {
        cacheBytes -= cache.get(key).bytes;
        cache.delete(key);
      }
      cache.set(key, entry);
      cacheBytes += entry.bytes;
      for (const [k, v] of cache) {
        if (cacheBytes <= CACHE_BYTES) break;
        cache.delete(k);
        cacheBytes -= v.bytes;
      }
    }

    function touch(key) {
      const v = cache.get(key);
      if (v) {
        cache.delete(key);
        cache.set(key, v);
      }
      return v;
    }

    const frameBytes = (inst) =>
      inst.rows * inst.columns * Math.ceil((inst.bits_allocated || 16) / 8) *
      (inst.samples_per_pixel || 1);

    // GET some slices; on 401/403 (the grant may have just expired: the kernel renews it)
    // once more after a pause. onRecord(number, ArrayBuffer) per frame as it arrives.
    async function requestSlices(numbers, onRecord) {
      const ask = () =>
        fetch(slicesUrl(model, numbers), {
          headers: { [HEADER]: grant() },
          credentials: "same-origin",
        });
      let resp = await ask();
      if (resp.status === 401 || resp.status === 403) {
        await new Promise((r) => setTimeout(r, 1500));
        resp = await ask();
      }
      if (!resp.ok) throw new Error(`frames could not be loaded (HTTP ${resp.status})`);
      await readRecords(resp, onRecord);
    }

    function keep(slice, buffer) {
      const data = typedFrame(buffer, slice.inst);
      const [lo, hi] = minMax(data);
      const entry = { data, lo, hi, bytes: data.byteLength };
      remember(keyOf(slice), entry);
      root.dataset.cached = String(cache.size);
      if (cache.size === slices.length && !root.dataset.completeMs) {
        // the whole series is local from here on (the benchmark reads this)
        root.dataset.completeMs = (performance.now() - opened).toFixed(1);
      }
      return entry;
    }

    // Fetch these slices (numbers) in one request; each one's promise settles as it arrives.
    function fetchBatch(numbers) {
      const gen = generation;
      for (const i of numbers) {
        const d = { bytes: frameBytes(slices[i].inst) };
        d.promise = new Promise((resolve, reject) => {
          d.resolve = resolve;
          d.reject = reject;
        });
        d.promise.catch(() => {}); // a prefetch nobody waits for must not be "unhandled"
        inflight.set(keyOf(slices[i]), d);
        inflightBytes += d.bytes;
      }
      const settle = (i, err, entry) => {
        const key = keyOf(slices[i]);
        const d = inflight.get(key);
        if (!d) return;
        inflight.delete(key);
        inflightBytes -= d.bytes;
        if (err) {
          failed.add(key);
          d.reject(err);
        } else d.resolve(entry);
      };
      active += 1;
      requestSlices(numbers, (i, buffer) => {
        if (gen !== generation || destroyed || !slices[i]) return;
        settle(i, null, keep(slices[i], buffer));
      })
        .then(() => new Error("a frame was missing from the store's answer"))
        .catch((err) => err)
        .then((err) => {
          active -= 1;
          if (gen === generation) for (const i of numbers) settle(i, err);
          fill();
        });
    }

    // slice wanted: from the cache, a batch under way, or a request of its own (urgent)
    function load(slice, urgent) {
      const key = keyOf(slice);
      if (cache.has(key)) return Promise.resolve(touch(key));
      if (inflight.has(key)) return inflight.get(key).promise;
      if (urgent) {
        failed.delete(key);
        fetchBatch([slice.i]);
        return inflight.get(key).promise;
      }
      fill();
      return inflight.has(key) ? inflight.get(key).promise : Promise.reject(new Error("not asked"));
    }

    // slice numbers outward from the one on show: AHEAD_PER_BEHIND ahead for each one behind
    function order() {
      const out = [];
      const step = direction >= 0 ? 1 : -1;
      let a = current;
      let b = current - step;
      const inside = (i) => i >= 0 && i < slices.length;
      while (inside(a) || inside(b)) {
        for (let k = 0; k < AHEAD_PER_BEHIND && inside(a); k++, a += step) out.push(a);
        if (inside(b)) {
          out.push(b);
          b -= step;
        }
      }
      return out;
    }

    // Keep BATCHES_IN_FLIGHT batches coming while the cache has room: a series scrolled once
    // in full is then local.
    const failed = new Set();
    function fill() {
      if (destroyed || !slices.length || !firstFrameSeen) return;
      while (active < BATCHES_IN_FLIGHT) {
        const batch = [];
        let bytes = 0;
        for (const i of order()) {
          const key = keyOf(slices[i]);
          if (cache.has(key) || inflight.has(key) || failed.has(key)) continue;
          const b = frameBytes(slices[i].inst);
          if (cacheBytes + inflightBytes + bytes + b > CACHE_BYTES * 0.9) break;
          batch.push(i);
          bytes += b;
          if (batch.length >= MAX_BATCH || bytes >= BATCH_BYTES) break;
        }
        if (!batch.length) return;
        fetchBatch(batch);
      }
    }

    function prefetch() {
      fill();
    }

    // -- window/level ---------------------------------------------------------------------
    function buildLut(inst, lo, hi) {
      const slope = inst.rescale_slope ?? 1;
      const icpt = inst.rescale_intercept ?? 0;
      const invert = inst.photometric === "MONOCHROME1";
      const key = `${lo}|${hi}|${slope}|${icpt}|${wc}|${ww}|${invert}`;
      if (key === lutKey) return lut;
      const n = hi - lo + 1;
      const out = new Uint32Array(n);
      const w = Math.max(ww, 1);
      const low = wc - 0.5 - (w - 1) / 2; // PS3.3 C.11.2.1.2 linear function
      for (let i = 0; i < n; i++) {
        const v = (lo + i) * slope + icpt;
        let g = ((v - low) / (w - 1 || 1)) * 255;
        g = g < 0 ? 0 : g > 255 ? 255 : g;
        if (invert) g = 255 - g;
        g = g | 0;
        out[i] = 0xff000000 | (g << 16) | (g << 8) | g;
      }
      lutKey = key;
      lut = out;
      return out;
    }

    let painted = ""; // what `offscreen` holds: a pan or a zoom does not repaint it
    function paintFrame(slice, entry) {
      const stamp = `${keyOf(slice)}|${wc}|${ww}|${generation}`;
      if (stamp === painted) return;
      painted = stamp;
      const inst = slice.inst;
      const rows = inst.rows;
      const cols = inst.columns;
      if (offscreen.width !== cols || offscreen.height !== rows || !imageData) {
        offscreen.width = cols;
        offscreen.height = rows;
        imageData = new ImageData(cols, rows);
      }
      const px = new Uint32Array(imageData.data.buffer);
      const data = entry.data;
      if ((inst.samples_per_pixel || 1) === 3) {
        const table = buildLut({ rescale_slope: 1, rescale_intercept: 0 }, 0, 255);
        for (let i = 0, j = 0; i < px.length; i++, j += 3) {
          const r = table[data[j]] & 0xff;
          const g = table[data[j + 1]] & 0xff;
          const b = table[data[j + 2]] & 0xff;
          px[i] = 0xff000000 | (b << 16) | (g << 8) | r;
        }
      } else if (entry.hi - entry.lo <= MAX_LUT) {
        const table = buildLut(inst, entry.lo, entry.hi);
        const lo = entry.lo;
        for (let i = 0; i < px.length; i++) px[i] = table[data[i] - lo];
      } else {
        // 32-bit values spanning more than a table can hold: the same function per pixel
        const slope = inst.rescale_slope ?? 1;
        const icpt = inst.rescale_intercept ?? 0;
        const w = Math.max(ww, 2);
        const low = wc - 0.5 - (w - 1) / 2;
        const invert = inst.photometric === "MONOCHROME1";
        for (let i = 0; i < px.length; i++) {
          let g = (((data[i] * slope + icpt - low) / (w - 1)) * 255) | 0;
          g = g < 0 ? 0 : g > 255 ? 255 : g;
          if (invert) g = 255 - g;
          px[i] = 0xff000000 | (g << 16) | (g << 8) | g;
        }
      }
      offscreen.getContext("2d").putImageData(imageData, 0, 0);
    }

    // -- drawing --------------------------------------------------------------------------
    function geometry() {
      const inst = slices[current].inst;
      const w = canvas.width;
      const h = canvas.height;
      const fit = Math.min(w / inst.columns, h / inst.rows);
      const scale = fit * zoom;
      const ox = (w - inst.columns * scale) / 2 + panX * devicePixelRatio;
      const oy = (h - inst.rows * scale) / 2 + panY * devicePixelRatio;
      return { scale, ox, oy };
    }

    function toImage(ev) {
      const r = canvas.getBoundingClientRect();
      const { scale, ox, oy } = geometry();
      const x = ((ev.clientX - r.left) * devicePixelRatio - ox) / scale;
      const y = ((ev.clientY - r.top) * devicePixelRatio - oy) / scale;
      return [x, y];
    }

    function lengthMm(m, inst) {
      const sp = inst.pixel_spacing;
      const dx = m.x1 - m.x0;
      const dy = m.y1 - m.y0;
      if (!sp) return { value: Math.hypot(dx, dy), unit: "px" };
      // PixelSpacing is [between rows (vertical), between columns (horizontal)]
      return { value: Math.hypot(dx * sp[1], dy * sp[0]), unit: "mm" };
    }

    function draw() {
      if (destroyed || !slices.length) return;
      const slice = slices[current];
      const entry = touch(keyOf(slice));
      const ctx = canvas.getContext("2d");
      const dpr = devicePixelRatio || 1;
      const w = Math.max(1, Math.round(stage.clientWidth * dpr));
      const h = Math.max(1, Math.round(stage.clientHeight * dpr));
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
      }
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, w, h);
      if (!entry) return;
      paintFrame(slice, entry);
      const { scale, ox, oy } = geometry();
      ctx.imageSmoothingEnabled = scale < 2;
      ctx.drawImage(offscreen, ox, oy, slice.inst.columns * scale, slice.inst.rows * scale);
      // measurements of this slice
      ctx.lineWidth = 2 * dpr;
      ctx.font = `${12 * dpr}px sans-serif`;
      let lastLabel = "";
      for (const m of measures.concat(drawing ? [drawing] : [])) {
        if (m.slice !== current) continue;
        const a = [ox + m.x0 * scale, oy + m.y0 * scale];
        const b = [ox + m.x1 * scale, oy + m.y1 * scale];
        ctx.strokeStyle = "#ff0";
        ctx.beginPath();
        ctx.moveTo(a[0], a[1]);
        ctx.lineTo(b[0], b[1]);
        ctx.stroke();
        const len = lengthMm(m, slice.inst);
        lastLabel = `${len.value.toFixed(1)} ${len.unit}`;
        ctx.fillStyle = "#ff0";
        ctx.fillText(lastLabel, b[0] + 6 * dpr, b[1] - 6 * dpr);
        root.dataset.measure = len.value.toFixed(2);
        root.dataset.measureUnit = len.unit;
      }
      const inst = slice.inst;
      const frames = inst.frames || 1;
      const where = frames > 1 ? `frame ${slice.n}/${frames}` : `image ${inst.number ?? ""}`;
      info.textContent =
        `${meta.modality || ""}  ${current + 1}/${slices.length}  (${where})\n` +
        `W ${Math.round(ww)}  L ${Math.round(wc)}  zoom ${(zoom * 100).toFixed(0)}%` +
        (lastLabel ? `\n${lastLabel}` : "");
      draws += 1;
      root.dataset.slice = String(current);
      root.dataset.wc = String(Math.round(wc));
      root.dataset.ww = String(Math.round(ww));
      root.dataset.zoom = zoom.toFixed(3);
      root.dataset.draws = String(draws);
      if (!firstFrameSeen) {
        firstFrameSeen = true;
        root.dataset.firstFrameMs = (performance.now() - started).toFixed(1);
        setStatus("");
        setTimeout(fill, 0);
      }
      root.dispatchEvent(new CustomEvent("cpms-dicom-frame", { detail: { slice: current } }));
    }

    let scheduled = false;
    function redraw() {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        draw();
      });
    }

    // show slice i: drawn at once if cached, otherwise as soon as it arrives
    function show(i) {
      if (!slices.length) return;
      i = Math.max(0, Math.min(slices.length - 1, i));
      if (i !== current) direction = i > current ? 1 : -1;
      current = i;
      slider.value = String(i);
      root.dataset.wanted = String(i);
      const slice = slices[i];
      // a slice in hand is drawn now, not at the next animation frame: a key press or a
      // wheel step shows its slice at once (drags, which fire far more often, use redraw)
      if (cache.has(keyOf(slice))) draw();
      else {
        load(slice, true)
          .then(() => {
            if (slices[current] === slice) draw();
          })
          .catch((err) => setStatus(String(err.message || err), true));
      }
      prefetch();
    }

    function defaultWindow(entry) {
      const inst = slices[current].inst;
      const first = (v) => (Array.isArray(v) ? v[0] : v);
      const width = Number(first(inst.window_width));
      if (width > 0) {
        wc = Number(first(inst.window_center));
        ww = width;
        return;
      }
      const slope = inst.rescale_slope ?? 1;
      const icpt = inst.rescale_intercept ?? 0;
      const a = entry.lo * slope + icpt;
      const b = entry.hi * slope + icpt;
      wc = (a + b) / 2;
      ww = Math.max(1, Math.abs(b - a));
    }

    async function open() {
      const gen = ++generation;
      stopCine();
      cache.clear();
      cacheBytes = 0;
      for (const d of inflight.values()) d.reject(new Error("another series was opened"));
      inflight.clear();
      inflightBytes = 0;
      failed.clear();
      delete root.dataset.cached;
      measures = [];
      firstFrameSeen = false;
      opened = performance.now();
      delete root.dataset.firstFrameMs;
      delete root.dataset.completeMs;
      delete root.dataset.error;
      const url = model.get("meta_url");
      if (!url) {
        setStatus(model.get("message") || "No series selected.");
        return;
      }
      setStatus("Loading series\u2026");
      // the first slice is asked for with the description, not after it: one round trip less
      let firstBuffer = null;
      const firstLoaded = requestSlices([0], (i, buffer) => {
        if (i === 0) firstBuffer = buffer;
      });
      firstLoaded.catch(() => {});
      const resp = await fetch(url, {
        headers: { [HEADER]: grant() },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!resp.ok) throw new Error(`the series could not be opened (HTTP ${resp.status})`);
      const m = await resp.json();
      if (gen !== generation || destroyed) return;
      meta = m;
      slices = [];
      for (const inst of m.instances || []) {
        for (let n = 1; n <= (inst.frames || 1); n++) slices.push({ inst, n, i: slices.length });
      }
      if (!slices.length) {
        setStatus("This series has no images.", true);
        return;
      }
      root.dataset.slices = String(slices.length);
      root.dataset.modality = m.modality || "";
      slider.max = String(slices.length - 1);
      presets.style.display = m.modality === "CT" ? "inline-flex" : "none";
      current = 0;
      direction = 1;
      zoom = 1;
      panX = panY = 0;
      await firstLoaded;
      if (gen !== generation || destroyed) return;
      if (!firstBuffer) throw new Error("the first slice was missing from the store's answer");
      const first = keep(slices[0], firstBuffer);
      defaultWindow(first);
      show(0);
      if ((slices[0].inst.frames || 1) > 1 && model.get("autoplay")) startCine();
    }

    function fail(err) {
      setStatus(String(err.message || err), true);
    }

    // -- series list ------------------------------------------------------------------------
    function fillSeries() {
      const list = model.get("series") || [];
      seriesSelect.replaceChildren();
      for (const s of list) {
        const o = document.createElement("option");
        o.value = s.series_uid;
        const parts = [s.modality, s.description || s.study_description, s.study_date]
          .filter(Boolean)
          .join(" \u2013 ");
        const count = s.frames > (s.instances || 0) ? `${s.frames} frames` : `${s.instances} images`;
        o.textContent = `${parts} (${count})`;
        seriesSelect.appendChild(o);
      }
      seriesSelect.value = model.get("series_uid") || "";
      seriesSelect.style.display = list.length ? "" : "none";
    }
    seriesSelect.addEventListener("change", () => {
      model.set("series_uid", seriesSelect.value);
      model.save_changes();
    });

    // -- cine -------------------------------------------------------------------------------
    function cineFps() {
      const ft = slices.length ? slices[current].inst.frame_time_ms : null;
      return ft && ft > 0 ? 1000 / ft : DEFAULT_CINE_FPS;
    }
    function startCine() {
      if (playing || slices.length < 2) return;
      let last = performance.now();
      const tick = (now) => {
        if (!playing) return;
        if (now - last >= 1000 / cineFps() - 2) {
          const next = (current + 1) % slices.length;
          // wait on a frame still in flight rather than draw black
          if (cache.has(keyOf(slices[next]))) {
            last = now;
            show(next);
          } else {
            load(slices[next], true).catch(fail);
          }
        }
        playing = requestAnimationFrame(tick);
      };
      playing = requestAnimationFrame(tick);
      play.textContent = "\u275a\u275a";
      root.dataset.playing = "true";
    }
    function stopCine() {
      if (playing) cancelAnimationFrame(playing);
      playing = null;
      play.textContent = "\u25b6";
      root.dataset.playing = "false";
    }

    // -- controls -------------------------------------------------------------------------
    function setMode(m) {
      mode = m;
      root.dataset.mode = m;
      for (const [k, b] of Object.entries(modes)) b.style.background = k === m ? "#3b6ea8" : "#2b2b2b";
    }
    setMode("wl");
    for (const b of Object.values(modes)) b.addEventListener("click", () => setMode(b.dataset.mode));
    presets.addEventListener("click", (ev) => {
      const name = ev.target && ev.target.dataset && ev.target.dataset.preset;
      if (!name) return;
      [wc, ww] = CT_PRESETS[name];
      root.dataset.preset = name;
      redraw();
    });
    const zoomBy = (f) => {
      zoom = Math.max(0.1, Math.min(40, zoom * f));
      panX *= f;
      panY *= f;
      redraw();
    };
    zoomIn.addEventListener("click", () => zoomBy(ZOOM_STEP));
    zoomOut.addEventListener("click", () => zoomBy(1 / ZOOM_STEP));
    reset.addEventListener("click", () => {
      zoom = 1;
      panX = panY = 0;
      const entry = slices.length && cache.get(keyOf(slices[current]));
      if (entry) defaultWindow(entry);
      delete root.dataset.preset;
      redraw();
    });
    clear.addEventListener("click", () => {
      measures = [];
      delete root.dataset.measure;
      redraw();
    });
    play.addEventListener("click", () => (playing ? stopCine() : startCine()));
    slider.addEventListener("input", () => show(parseInt(slider.value, 10)));

    canvas.addEventListener(
      "wheel",
      (ev) => {
        ev.preventDefault();
        if (ev.ctrlKey) zoomBy(ev.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP);
        else show(current + (ev.deltaY > 0 ? 1 : -1));
      },
      { passive: false },
    );
    canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());

    const pointers = new Map();
    let pinch = 0;
    let drag = null;
    canvas.addEventListener("pointerdown", (ev) => {
      root.focus({ preventScroll: true });
      canvas.setPointerCapture(ev.pointerId);
      pointers.set(ev.pointerId, [ev.clientX, ev.clientY]);
      if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        pinch = Math.hypot(a[0] - b[0], a[1] - b[1]);
        drag = null;
        return;
      }
      const how = ev.button === 2 || ev.ctrlKey ? "pan" : ev.button === 1 ? "pan" : mode;
      drag = { how, x: ev.clientX, y: ev.clientY, wc, ww, panX, panY };
      if (how === "measure" && slices.length) {
        const [x, y] = toImage(ev);
        drawing = { slice: current, x0: x, y0: y, x1: x, y1: y };
      }
    });
    canvas.addEventListener("pointermove", (ev) => {
      if (!pointers.has(ev.pointerId)) return;
      pointers.set(ev.pointerId, [ev.clientX, ev.clientY]);
      if (pointers.size === 2 && pinch > 0) {
        const [a, b] = [...pointers.values()];
        const d = Math.hypot(a[0] - b[0], a[1] - b[1]);
        zoomBy(d / pinch);
        pinch = d;
        return;
      }
      if (!drag) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (drag.how === "wl") {
        // one screen pixel moves the window by ~0.5% of its width (at least one unit)
        const k = Math.max(drag.ww / 200, 1);
        ww = Math.max(1, drag.ww + dx * k);
        wc = drag.wc + dy * k;
        delete root.dataset.preset;
      } else if (drag.how === "pan") {
        panX = drag.panX + dx;
        panY = drag.panY + dy;
      } else if (drag.how === "measure" && drawing) {
        const [x, y] = toImage(ev);
        drawing.x1 = x;
        drawing.y1 = y;
      }
      redraw();
    });
    const end = (ev) => {
      pointers.delete(ev.pointerId);
      if (pointers.size < 2) pinch = 0;
      if (drawing && (drawing.x0 !== drawing.x1 || drawing.y0 !== drawing.y1)) {
        measures.push(drawing);
      }
      drawing = null;
      drag = null;
      redraw();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);

    root.addEventListener("keydown", (ev) => {
      const keys = {
        ArrowDown: () => show(current + 1),
        ArrowRight: () => show(current + 1),
        ArrowUp: () => show(current - 1),
        ArrowLeft: () => show(current - 1),
        PageDown: () => show(current + 10),
        PageUp: () => show(current - 10),
        Home: () => show(0),
        End: () => show(slices.length - 1),
        "+": () => zoomBy(ZOOM_STEP),
        "=": () => zoomBy(ZOOM_STEP),
        "-": () => zoomBy(1 / ZOOM_STEP),
        " ": () => (playing ? stopCine() : startCine()),
      };
      const f = keys[ev.key];
      if (f) {
        ev.preventDefault();
        ev.stopPropagation(); // JupyterLab would take arrows and space for the notebook
        f();
      }
    });

    const resize = new ResizeObserver(() => redraw());
    resize.observe(stage);

    // -- model --------------------------------------------------------------------------------
    const onMeta = () => open().catch(fail);
    const onHeight = () => {
      root.style.height = cssHeight(model);
    };
    model.on("change:meta_url", onMeta);
    model.on("change:series", fillSeries);
    model.on("change:series_uid", fillSeries);
    model.on("change:height", onHeight);
    fillSeries();
    open().catch(fail);

    return () => {
      destroyed = true;
      generation += 1;
      stopCine();
      resize.disconnect();
      model.off("change:meta_url", onMeta);
      model.off("change:series", fillSeries);
      model.off("change:series_uid", fillSeries);
      model.off("change:height", onHeight);
      cache.clear();
    };
  },
};
