// Local image files: read as base64 for the API, shown as previews (PGM/PPM decoded here, since browsers
// do not show them), and drop zones that fill a file input.

const PNM_NAME = /\.p[gpn]m$/i;

/** The file's bytes as plain base64 (no data: prefix). */
export function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(new Error(`could not read ${file.name}: ${reader.error}`));
    reader.readAsDataURL(file);
  });
}

/** The file name without its extension. */
export function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

/** Header tokens of a PNM file (magic, width, height, maxval) and where the pixels start. */
function pnmHeader(bytes) {
  const tokens = [];
  let i = 0;
  while (tokens.length < 4 && i < bytes.length) {
    const c = bytes[i];
    if (c === 0x23) { // '#': a comment to the end of the line
      while (i < bytes.length && bytes[i] !== 0x0a) i += 1;
    } else if (c <= 0x20) {
      i += 1;
    } else {
      let token = "";
      while (i < bytes.length && bytes[i] > 0x20) token += String.fromCharCode(bytes[i++]);
      tokens.push(token);
    }
  }
  return { tokens, start: i + 1 };
}

/** RGBA pixels of a P2/P3/P5/P6 file, or null when it is not one we can read. */
export function decodePnm(bytes) {
  const { tokens, start } = pnmHeader(bytes);
  const [magic, w, h, max] = [tokens[0], Number(tokens[1]), Number(tokens[2]), Number(tokens[3])];
  if (!["P2", "P3", "P5", "P6"].includes(magic) || !(w > 0 && h > 0 && max > 0) || w * h > 16e6) return null;
  const channels = magic === "P3" || magic === "P6" ? 3 : 1;
  const ascii = magic === "P2" || magic === "P3";
  const wide = max > 255;
  const values = ascii ? new TextDecoder().decode(bytes.subarray(start - 1)).trim().split(/\s+/).map(Number) : null;
  const sample = (k) => {
    if (ascii) return values[k];
    return wide ? (bytes[start + 2 * k] << 8) | bytes[start + 2 * k + 1] : bytes[start + k];
  };
  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let p = 0; p < w * h; p += 1) {
    for (let c = 0; c < 3; c += 1) rgba[4 * p + c] = (255 * sample(p * channels + (channels === 3 ? c : 0))) / max;
    rgba[4 * p + 3] = 255;
  }
  return new ImageData(rgba, w, h);
}

/** A URL the page can show for a local file: PNM drawn on a canvas, other formats as they are. */
export async function previewUrl(file) {
  if (PNM_NAME.test(file.name)) {
    const pixels = decodePnm(new Uint8Array(await file.arrayBuffer()));
    if (pixels) {
      const canvas = document.createElement("canvas");
      canvas.width = pixels.width;
      canvas.height = pixels.height;
      canvas.getContext("2d").putImageData(pixels, 0, 0);
      return canvas.toDataURL("image/png");
    }
  }
  return URL.createObjectURL(file);
}

/** Show `file` in `img` (or hide it for no file); a file the browser cannot show keeps its alt text. */
export async function showPreview(img, file, alt) {
  img.hidden = !file;
  if (!file) return;
  img.alt = alt;
  img.onerror = () => { img.alt = `${alt} (this browser cannot show this file)`; };
  img.src = await previewUrl(file);
}

/** Let `zone` take dropped files into its file `input` (a change event follows, as for a chosen file). */
export function makeDropZone(zone, input) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (!event.dataTransfer || event.dataTransfer.files.length === 0) return;
    input.files = event.dataTransfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
}
