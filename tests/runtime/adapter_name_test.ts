/** What an adapter is called on each WebGPU implementation (runtime/device.ts). */
import assert from "node:assert/strict";
import { adapterName } from "../../runtime/device.ts";

const h100 = {
  vendor: "nvidia",
  architecture: "hopper",
  device: "NVIDIA H100 80GB HBM3",
  description: "NVIDIA: 580.159.04 580.159.4.0",
};

Deno.test("Dawn's adapter is named by its device, not its driver's description", () => {
  assert.equal(adapterName(h100, "dawn"), "NVIDIA H100 80GB HBM3");
  assert.equal(adapterName({ ...h100, device: "" }, "dawn"), "NVIDIA: 580.159.04 580.159.4.0");
});

Deno.test("Deno's adapter is named by its description, else its device id", () => {
  const wgpu = { vendor: "4318", architecture: "", device: "8839", description: "NVIDIA H200" };
  assert.equal(adapterName(wgpu, "native"), "NVIDIA H200");
  assert.equal(adapterName({ ...wgpu, description: "" }, "native"), "8839");
});

Deno.test("an adapter with no name is called by vendor and architecture", () => {
  const swiftshader = {
    vendor: "google",
    architecture: "swiftshader",
    device: "",
    description: "",
  };
  assert.equal(adapterName(swiftshader, "native"), "google swiftshader");
  assert.equal(
    adapterName({ ...swiftshader, vendor: "", architecture: "" }, "dawn"),
    "unknown adapter",
  );
});
