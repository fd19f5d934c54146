// The whole-slide viewer of CPMS: an anywidget front end around OpenSeadragon.
// Bundled by esbuild (see the Makefile) into cpms_widgets/viewers/static/slide_viewer.js.
// The grant travels only in the X-CPMS-Grant header, never in a URL.
//
// The same module runs in JupyterLab (anywidget) and in Panel (pn.custom.AnyWidgetComponent),
// so it uses only model.get / set / save_changes / on / off: no model.send, no binary
// buffers. Tiles come over HTTP with the grant. Shared annotations are drawn here (point,
// rectangle, polygon, each with a comment) and rendered as an SVG layer over the slide, in
// level-0 image coordinates; writes go out as an `annotation_request` trait that the
// Python side (kernel or Panel app) carries out with the user's own client, and the
// resulting list comes back in the `annotations` trait. A poll every `poll_seconds`
// (while the page is visible) brings the other reviewers' annotations.
import OpenSeadragon from "openseadragon";

const HEADER = "X-CPMS-Grant";
const SVG_NS = "http://www.w3.org/2000/svg";
const TOOLS = [
  ["pan", "Pan", "\u2725"],
  ["point", "Point", "\u2022"],
  ["rectangle", "Rectangle", "\u25ad"],
  ["polygon", "Polygon", "\u2b20"],
];
// one colour per author, stable across sessions
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#9a6324"];

function colourOf(name) {
  let h = 0;
  for (const ch of name || "") h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function cssSize(value, fallback) {
  if (typeof value === "number" && value > 0) return `${value}px`;
  return value || fallback;
}

function nonce() {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

// Button images as small inline SVGs (no CDN, no image route): one glyph per button.
function svgButton(glyph, fill) {
  const mark = glyph.startsWith("<")
    ? glyph
    : `<text x="17" y="23" font-size="18" font-family="sans-serif" text-anchor="middle"` +
      ` fill="#222">${glyph}</text>`;
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="34" height="34">` +
    `<rect x="2" y="2" width="30" height="30" rx="6" fill="${fill}" stroke="#555"/>` +
    `${mark}</svg>`;
  return "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
}

function navImages() {
  const glyphs = {
    zoomIn: "+", zoomOut: "\u2212", home: "\u2302",
    fullpage: '<path d="M10 15v-5h5M19 10h5v5M24 19v5h-5M15 24h-5v-5" stroke="#222"' +
      ' stroke-width="2" fill="none"/>',
    rotateleft: "\u27f2", rotateright: "\u27f3", flip: "\u21c4", previous: "\u2039",
    next: "\u203a",
  };
  const out = {};
  for (const [key, glyph] of Object.entries(glyphs)) {
    out[key] = {
      REST: svgButton(glyph, "rgba(255,255,255,0.7)"),
      GROUP: svgButton(glyph, "rgba(255,255,255,0.85)"),
      HOVER: svgButton(glyph, "#fff"),
      DOWN: svgButton(glyph, "#ddd"),
    };
  }
  return out;
}

// Parse the Deep Zoom descriptor (<Image TileSize Overlap Format><Size Width Height/></Image>)
function parseDzi(text) {
  const doc = new DOMParser().parseFromString(text, "application/xml");
  const image = doc.getElementsByTagName("Image")[0];
  const size = doc.getElementsByTagName("Size")[0];
  if (!image || !size) throw new Error("not a Deep Zoom descriptor");
  return {
    width: parseInt(size.getAttribute("Width"), 10),
    height: parseInt(size.getAttribute("Height"), 10),
    tileSize: parseInt(image.getAttribute("TileSize"), 10),
    overlap: parseInt(image.getAttribute("Overlap") || "0", 10),
    format: image.getAttribute("Format") || "jpeg",
  };
}

// A round scale-bar length (1, 2 or 5 × 10^n µm) close to `target` µm
function roundLength(target) {
  const p = Math.pow(10, Math.floor(Math.log10(target)));
  for (const m of [5, 2, 1]) if (m * p <= target) return m * p;
  return p;
}

function label(um) {
  if (um >= 1000) return `${um / 1000} mm`;
  if (um >= 1) return `${um} \u00b5m`;
  return `${Math.round(um * 1000)} nm`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The toolbar, the comment box and the list of annotations (text only: never innerHTML)
function annotationUi(root, list) {
  const tools = el("div", "cpms-annotation-tools");
  tools.style.cssText =
    "position:absolute;right:8px;top:8px;z-index:20;display:flex;gap:4px;" +
    "background:rgba(255,255,255,0.85);padding:3px;border-radius:6px;font:12px sans-serif";
  const buttons = {};
  for (const [name, title, glyph] of TOOLS) {
    const b = el("button", `cpms-tool cpms-tool-${name}`, `${glyph} ${title}`);
    b.type = "button";
    b.dataset.tool = name;
    b.title = title;
    tools.appendChild(b);
    buttons[name] = b;
  }
  const finish = el("button", "cpms-tool cpms-tool-finish", "\u2713 Finish");
  finish.type = "button";
  finish.style.display = "none";
  tools.appendChild(finish);
  const refresh = el("button", "cpms-tool cpms-tool-refresh", "\u21bb");
  refresh.type = "button";
  refresh.title = "Show the latest annotations";
  tools.appendChild(refresh);
  root.appendChild(tools);

  const box = el("div", "cpms-annotation-comment");
  box.style.cssText =
    "position:absolute;left:50%;bottom:12px;transform:translateX(-50%);z-index:30;" +
    "background:#fff;border:1px solid #888;border-radius:6px;padding:6px;display:none;" +
    "font:12px sans-serif;width:min(420px,90%)";
  const prompt = el("div", "cpms-comment-prompt", "Comment for the panel:");
  const text = el("textarea", "cpms-comment-text");
  text.rows = 3;
  text.maxLength = 2000;
  text.style.cssText = "width:100%;box-sizing:border-box";
  const row = el("div");
  row.style.cssText = "display:flex;gap:6px;margin-top:4px;align-items:center";
  const save = el("button", "cpms-comment-save", "Save");
  save.type = "button";
  const cancel = el("button", "cpms-comment-cancel", "Cancel");
  cancel.type = "button";
  const message = el("span", "cpms-comment-message");
  row.append(save, cancel, message);
  box.append(prompt, text, row);
  root.appendChild(box);

  list.className = "cpms-annotation-list";
  list.style.cssText = "font:12px sans-serif;margin:4px 0;padding-left:18px;max-height:160px;" +
    "overflow:auto";
  return { tools, buttons, finish, refresh, box, text, save, cancel, message };
}

export default {
  render({ model, el: host }) {
    const root = el("div", "cpms-slide-viewer");
    root.style.position = "relative";
    root.style.width = "100%";
    const heightOf = () => cssSize(model.get("viewer_height") || model.get("height"), "600px");
    root.style.height = heightOf();
    root.style.background = "#fff";
    root.style.border = "1px solid #ccc";
    const holder = el("div");
    holder.style.position = "absolute";
    holder.style.inset = "0";
    root.appendChild(holder);
    const status = el("div", "cpms-slide-status", "Loading slide\u2026");
    status.style.cssText = "position:absolute;left:8px;top:8px;font:12px sans-serif;color:#333";
    root.appendChild(status);
    const bar = el("div", "cpms-scale-bar");
    bar.style.cssText =
      "position:absolute;left:10px;bottom:10px;z-index:10;font:12px sans-serif;" +
      "color:#000;background:rgba(255,255,255,0.8);padding:2px 4px;pointer-events:none;" +
      "display:none";
    const line = el("div");
    line.style.cssText = "height:4px;background:#000;margin-top:2px";
    const text = el("span");
    bar.appendChild(text);
    bar.appendChild(line);
    root.appendChild(bar);
    const list = el("ul");
    const ui = annotationUi(root, list);
    // keys typed in the comment box or sent to OpenSeadragon's keyboard navigation must not
    // trigger JupyterLab's notebook shortcuts ("a" inserts a cell, "d d" deletes one)
    root.setAttribute("data-lm-suppress-shortcuts", "true");
    list.setAttribute("data-lm-suppress-shortcuts", "true");
    host.appendChild(root);
    host.appendChild(list);

    let viewer = null;
    let destroyed = false;
    let tool = "pan";
    let draft = null; // {kind, points: [[x, y], ...], done}
    let pending = null; // nonce of the request awaiting its status
    let renewing = "";
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "cpms-annotation-layer");
    svg.style.cssText =
      "position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none;z-index:5";
    const headers = () => ({ [HEADER]: model.get("grant") });

    function request(body) {
      const id = nonce();
      model.set("annotation_request", { ...body, nonce: id });
      model.save_changes();
      return id;
    }

    function item() {
      return viewer && viewer.world.getItemCount() ? viewer.world.getItemAt(0) : null;
    }

    function toScreen([x, y]) {
      return item().imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
    }

    function toImage(position) {
      const p = item().viewerElementToImageCoordinates(position);
      return [Math.round(p.x * 100) / 100, Math.round(p.y * 100) / 100];
    }

    function corners(kind, points) {
      if (kind !== "rectangle" || points.length < 2) return points;
      const [[x0, y0], [x1, y1]] = points;
      return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
    }

    function shape(ann, isDraft) {
      const colour = isDraft ? "#ffb000" : colourOf(ann.author);
      let node;
      if (ann.kind === "point") {
        const p = toScreen(ann.points[0]);
        node = document.createElementNS(SVG_NS, "circle");
        node.setAttribute("cx", p.x);
        node.setAttribute("cy", p.y);
        node.setAttribute("r", 7);
        node.setAttribute("fill", colour);
        node.setAttribute("stroke", "#fff");
        node.setAttribute("stroke-width", 2);
      } else {
        const pts = corners(ann.kind, ann.points).map(toScreen);
        const closed = ann.kind === "rectangle" || !isDraft || ann.done;
        node = document.createElementNS(SVG_NS, closed ? "polygon" : "polyline");
        node.setAttribute("points", pts.map((p) => `${p.x},${p.y}`).join(" "));
        node.setAttribute("fill", closed ? colour : "none");
        node.setAttribute("fill-opacity", "0.15");
        node.setAttribute("stroke", colour);
        node.setAttribute("stroke-width", 2);
      }
      node.setAttribute("class", isDraft ? "cpms-annotation cpms-annotation-draft" : "cpms-annotation");
      node.dataset.kind = ann.kind;
      if (!isDraft) {
        node.dataset.annotationId = ann.id;
        node.dataset.author = ann.author;
      }
      return node;
    }

    function drawAll() {
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      if (!item()) return;
      for (const ann of model.get("annotations") || []) svg.appendChild(shape(ann, false));
      if (draft && draft.points.length) svg.appendChild(shape(draft, true));
    }

    function listAll() {
      const anns = model.get("annotations") || [];
      const me = model.get("user");
      list.replaceChildren();
      root.dataset.annotations = String(anns.length);
      for (const ann of anns) {
        const li = el("li", "cpms-annotation-item");
        li.dataset.annotationId = ann.id;
        li.style.cursor = "pointer";
        const who = el("b", "cpms-annotation-author", ann.author);
        who.style.color = colourOf(ann.author);
        const what = el("span", "cpms-annotation-text", ` (${ann.kind}): ${ann.comment}`);
        li.append(who, what);
        if (ann.author === me && model.get("can_annotate")) {
          const del = el("button", "cpms-annotation-delete", "\u00d7");
          del.type = "button";
          del.title = "Delete your annotation";
          del.style.marginLeft = "6px";
          del.addEventListener("click", (ev) => {
            ev.stopPropagation();
            pending = request({ op: "delete", id: ann.id });
          });
          li.appendChild(del);
        }
        li.addEventListener("click", () => goTo(ann));
        list.appendChild(li);
      }
    }

    function goTo(ann) {
      if (!item()) return;
      const xs = ann.points.map((p) => p[0]);
      const ys = ann.points.map((p) => p[1]);
      const pad = 200;
      const rect = item().imageToViewportRectangle(
        Math.min(...xs) - pad, Math.min(...ys) - pad,
        Math.max(...xs) - Math.min(...xs) + 2 * pad, Math.max(...ys) - Math.min(...ys) + 2 * pad,
      );
      viewer.viewport.fitBounds(rect);
    }

    // the host asks to show one annotation (the review discussion's "Show on the slide")
    function focusAsked() {
      const id = model.get("focus_annotation");
      const ann = (model.get("annotations") || []).find((a) => a.id === id);
      if (!id || !ann || !item()) return;
      goTo(ann);
      root.dataset.focused = id;
    }

    function setTool(name) {
      tool = name;
      root.dataset.tool = name;
      for (const [n, b] of Object.entries(ui.buttons)) {
        b.setAttribute("aria-pressed", String(n === name));
        b.style.fontWeight = n === name ? "bold" : "normal";
      }
      cancelDraft();
    }

    function cancelDraft() {
      draft = null;
      ui.box.style.display = "none";
      ui.finish.style.display = "none";
      ui.message.textContent = "";
      drawAll();
    }

    function finishDraft() {
      if (!draft) return;
      draft.done = true;
      ui.finish.style.display = "none";
      ui.box.style.display = "block";
      ui.message.textContent = "";
      ui.text.value = "";
      ui.text.focus();
      drawAll();
    }

    function updateTools() {
      const can = !!model.get("can_annotate");
      for (const [n, b] of Object.entries(ui.buttons)) b.style.display = can || n === "pan" ? "" : "none";
      if (!can && tool !== "pan") setTool("pan");
    }

    function onStatus() {
      const st = model.get("annotation_status") || {};
      if (!st.nonce || st.nonce !== pending) return;
      pending = null;
      ui.save.disabled = false;
      if (st.ok) {
        if (draft && draft.done) cancelDraft();
        root.dataset.lastSaved = st.message || "ok";
      } else {
        ui.message.textContent = st.message || "not saved";
        ui.message.style.color = "#a00";
        root.dataset.lastError = ui.message.textContent;
      }
    }

    function updateScale() {
      drawAll();
      const it = item();
      if (!it) return;
      const zoom = it.viewportToImageZoom(viewer.viewport.getZoom(true));
      root.dataset.zoom = String(zoom);
      root.dataset.rotation = String(viewer.viewport.getRotation());
      // the Deep Zoom level currently shown at full resolution
      const src = it.source;
      const level = Math.max(0, Math.min(src.maxLevel,
        Math.ceil(src.maxLevel + Math.log2(Math.max(zoom, 1e-9)))));
      root.dataset.level = String(level);
      const mpp = model.get("mpp");
      if (!mpp || !(zoom > 0)) {
        bar.style.display = "none";
        return;
      }
      const umPerScreenPx = mpp / zoom;
      const um = roundLength(umPerScreenPx * 120);
      line.style.width = `${Math.round(um / umPerScreenPx)}px`;
      text.textContent = label(um);
      bar.style.display = "block";
    }

    function near(a, b) {
      const pa = toScreen(a);
      const pb = toScreen(b);
      return Math.hypot(pa.x - pb.x, pa.y - pb.y) < 6;
    }

    function drawingHandlers() {
      viewer.addHandler("canvas-click", (ev) => {
        if (tool === "pan") return;
        ev.preventDefaultAction = true;
        if (!ev.quick || (draft && draft.done)) return;
        const p = toImage(ev.position);
        if (tool === "point") {
          draft = { kind: "point", points: [p] };
          finishDraft();
        } else if (tool === "polygon") {
          if (!draft) draft = { kind: "polygon", points: [] };
          const last = draft.points[draft.points.length - 1];
          if (!last || !near(last, p)) draft.points.push(p);
          ui.finish.style.display = draft.points.length >= 3 ? "" : "none";
          drawAll();
        }
      });
      viewer.addHandler("canvas-double-click", (ev) => {
        if (tool === "pan") return;
        ev.preventDefaultAction = true;
        if (tool === "polygon" && draft && draft.points.length >= 3 && !draft.done) finishDraft();
      });
      viewer.addHandler("canvas-press", (ev) => {
        if (tool !== "rectangle" || (draft && draft.done)) return;
        const p = toImage(ev.position);
        draft = { kind: "rectangle", points: [p, p] };
      });
      viewer.addHandler("canvas-drag", (ev) => {
        if (tool !== "rectangle") return;
        ev.preventDefaultAction = true;
        if (!draft || draft.done) return;
        draft.points[1] = toImage(ev.position);
        drawAll();
      });
      viewer.addHandler("canvas-release", (ev) => {
        if (tool !== "rectangle" || !draft || draft.done) return;
        draft.points[1] = toImage(ev.position);
        const [[x0, y0], [x1, y1]] = draft.points;
        if (Math.abs(x1 - x0) > 0 && Math.abs(y1 - y0) > 0) finishDraft();
        else cancelDraft();
      });
    }

    async function open() {
      const resp = await fetch(model.get("dzi_url"), {
        headers: headers(),
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!resp.ok) throw new Error(`the slide could not be opened (HTTP ${resp.status})`);
      const dzi = parseDzi(await resp.text());
      if (destroyed) return;
      const tileBase = () => model.get("tile_base").replace(/\/$/, "");
      viewer = OpenSeadragon({
        element: holder,
        prefixUrl: "",
        navImages: navImages(),
        showNavigator: true,
        navigatorPosition: "BOTTOM_RIGHT",
        showRotationControl: true,
        loadTilesWithAjax: true,
        ajaxHeaders: headers(),
        ajaxWithCredentials: false,
        crossOriginPolicy: false,
        tileSources: {
          width: dzi.width,
          height: dzi.height,
          tileSize: dzi.tileSize,
          tileOverlap: dzi.overlap,
          minLevel: 0,
          getTileUrl: (level, x, y) => `${tileBase()}/${level}/${x}_${y}.${dzi.format}`,
        },
      });
      viewer.canvas.appendChild(svg);
      status.remove();
      for (const name of ["open", "zoom", "animation", "resize", "rotate", "pan"]) {
        viewer.addHandler(name, updateScale);
      }
      drawingHandlers();
      viewer.addOnceHandler("open", focusAsked);
    }

    // wire the toolbar and comment box
    for (const [name, b] of Object.entries(ui.buttons)) b.addEventListener("click", () => setTool(name));
    ui.finish.addEventListener("click", () => {
      if (draft && draft.points.length >= 3) finishDraft();
    });
    ui.refresh.addEventListener("click", () => request({ op: "refresh" }));
    ui.cancel.addEventListener("click", cancelDraft);
    ui.save.addEventListener("click", () => {
      if (!draft || !draft.done) return;
      const comment = ui.text.value.trim();
      if (!comment) {
        ui.message.textContent = "write a comment first";
        ui.message.style.color = "#a00";
        return;
      }
      ui.save.disabled = true;
      ui.message.textContent = "saving\u2026";
      ui.message.style.color = "#333";
      pending = request({ op: "add", kind: draft.kind, points: draft.points, comment });
    });
    root.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") cancelDraft();
    });
    setTool("pan");
    updateTools();
    listAll();

    const onGrant = () => {
      if (viewer) viewer.setAjaxHeaders(headers(), true);
    };
    const onHeight = () => {
      root.style.height = heightOf();
    };
    const onAnnotations = () => {
      listAll();
      drawAll();
    };
    const onUser = () => {
      updateTools();
      listAll();
    };
    model.on("change:grant", onGrant);
    model.on("change:height", onHeight);
    model.on("change:viewer_height", onHeight);
    model.on("change:mpp", updateScale);
    model.on("change:annotations", onAnnotations);
    model.on("change:annotation_status", onStatus);
    model.on("change:can_annotate", onUser);
    model.on("change:user", onUser);
    model.on("change:focus_annotation", focusAsked);

    // the other reviewers' annotations, and a fresh grant before this one expires
    let lastPoll = Date.now();
    const poll = setInterval(() => {
      if (destroyed || document.visibilityState !== "visible") return;
      const seconds = model.get("poll_seconds") || 0;
      const now = Date.now();
      if (seconds > 0 && now - lastPoll >= seconds * 1000) {
        lastPoll = now;
        request({ op: "refresh" });
      }
      const expires = Date.parse(model.get("expires_at") || "");
      const grant = model.get("grant");
      if (expires && expires - now < 60000 && renewing !== grant) {
        renewing = grant;
        request({ op: "renew" });
      }
    }, 1000);

    open().catch((err) => {
      status.textContent = String(err.message || err);
      status.style.color = "#a00";
      root.dataset.error = status.textContent;
    });

    return () => {
      destroyed = true;
      clearInterval(poll);
      model.off("change:grant", onGrant);
      model.off("change:height", onHeight);
      model.off("change:viewer_height", onHeight);
      model.off("change:mpp", updateScale);
      model.off("change:annotations", onAnnotations);
      model.off("change:annotation_status", onStatus);
      model.off("change:can_annotate", onUser);
      model.off("change:user", onUser);
      model.off("change:focus_annotation", focusAsked);
      if (viewer) viewer.destroy();
    };
  },
};
