// The whole-slide viewer of CPMS: an anywidget front end around OpenSeadragon.
// Bundled by esbuild (see the Makefile) into cpms_widgets/viewers/static/slide_viewer.js.
// The grant travels only in the X-CPMS-Grant header, never in a URL.
import OpenSeadragon from "openseadragon";

const HEADER = "X-CPMS-Grant";

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

export default {
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "cpms-slide-viewer";
    root.style.position = "relative";
    root.style.width = "100%";
    root.style.height = model.get("height") || "600px";
    root.style.background = "#fff";
    root.style.border = "1px solid #ccc";
    const holder = document.createElement("div");
    holder.style.position = "absolute";
    holder.style.inset = "0";
    root.appendChild(holder);
    const status = document.createElement("div");
    status.className = "cpms-slide-status";
    status.style.cssText = "position:absolute;left:8px;top:8px;font:12px sans-serif;color:#333";
    status.textContent = "Loading slide\u2026";
    root.appendChild(status);
    const bar = document.createElement("div");
    bar.className = "cpms-scale-bar";
    bar.style.cssText =
      "position:absolute;left:10px;bottom:10px;z-index:10;font:12px sans-serif;" +
      "color:#000;background:rgba(255,255,255,0.8);padding:2px 4px;pointer-events:none;" +
      "display:none";
    const line = document.createElement("div");
    line.style.cssText = "height:4px;background:#000;margin-top:2px";
    const text = document.createElement("span");
    bar.appendChild(text);
    bar.appendChild(line);
    root.appendChild(bar);
    el.appendChild(root);

    let viewer = null;
    let destroyed = false;
    const headers = () => ({ [HEADER]: model.get("grant") });

    function updateScale() {
      if (!viewer || !viewer.world.getItemCount()) return;
      const item = viewer.world.getItemAt(0);
      const zoom = item.viewportToImageZoom(viewer.viewport.getZoom(true));
      root.dataset.zoom = String(zoom);
      // the Deep Zoom level currently shown at full resolution
      const src = item.source;
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
      status.remove();
      viewer.addHandler("open", updateScale);
      viewer.addHandler("zoom", updateScale);
      viewer.addHandler("animation", updateScale);
      viewer.addHandler("resize", updateScale);
    }

    const onGrant = () => {
      if (viewer) viewer.setAjaxHeaders(headers(), true);
    };
    const onHeight = () => {
      root.style.height = model.get("height") || "600px";
    };
    model.on("change:grant", onGrant);
    model.on("change:height", onHeight);
    model.on("change:mpp", updateScale);

    open().catch((err) => {
      status.textContent = String(err.message || err);
      status.style.color = "#a00";
      root.dataset.error = status.textContent;
    });

    return () => {
      destroyed = true;
      model.off("change:grant", onGrant);
      model.off("change:height", onHeight);
      model.off("change:mpp", updateScale);
      if (viewer) viewer.destroy();
    };
  },
};
