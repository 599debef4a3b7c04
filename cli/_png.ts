/**
 * A minimal PNG encoder (8-bit RGB, no interlace): enough for `explain --png`, without a
 * dependency. Rows are filtered with "none" and the image data is zlib-deflated by `node:zlib`.
 * @module
 */
import { deflateSync } from "node:zlib";

/** An RGB raster, row-major, 3 bytes per pixel. */
export interface Raster {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/**
 * Encodes a raster as a PNG file.
 *
 * @param image width, height and RGB bytes
 * @returns the PNG file's bytes
 * @example
 * ```ts
 * import { encodePng } from "./_png.ts";
 * const png = encodePng({ width: 1, height: 1, rgb: new Uint8Array([255, 0, 0]) });
 * png.subarray(1, 4); // "PNG"
 * ```
 */
export function encodePng(image: Raster): Uint8Array {
  const { width, height, rgb } = image;
  if (rgb.length !== width * height * 3) {
    throw new RangeError(`raster of ${width}x${height} needs ${width * height * 3} bytes`);
  }
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    raw[y * (1 + width * 3)] = 0; // filter: none
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (1 + width * 3) + 1);
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits, truecolour, deflate, no filter set, no interlace
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", new Uint8Array(deflateSync(raw))),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (ISO 3309), as PNG chunks use it. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
