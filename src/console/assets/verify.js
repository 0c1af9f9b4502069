// Verifies the ledger in the browser, with no help from the server beyond the bytes it sent.
// On an entry's page (#proof): the entry's RFC 6962 leaf hash, its inclusion proof up to the
// checkpoint's root (RFC 9162 2.1.3.2), and the checkpoint's Ed25519 signature (a C2SP signed
// note) under the ledger key. On the ledger's page (#ledger-check): the latest checkpoint's
// signature, and that the ledger this browser saw last time is a prefix of it (a consistency
// proof, RFC 9162 2.1.4.2), as a monitor of a transparency log checks; the browser then remembers
// the new checkpoint. WebCrypto does the SHA-256 and the Ed25519.
"use strict";

const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const text = (s) => new TextEncoder().encode(s);
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const sha256 = async (data) => new Uint8Array(await crypto.subtle.digest("SHA-256", data));
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// RFC 9162 2.1.3.2, with halving by division: indices may exceed 32 bits.
async function rootFrom(index, size, leaf, path) {
  if (index >= size) throw new Error("the index is outside the tree");
  let fn = index, sn = size - 1, r = leaf;
  for (const p of path) {
    if (sn === 0) throw new Error("the proof is too long");
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat([1], p, r));
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await sha256(concat([1], r, p));
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("the proof is too short");
  return r;
}

// A C2SP signed note: the text up to the blank line, then "— <name> <base64(key id || sig)>".
async function checkpointRoot(note, vkey) {
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint is not a signed note");
  const body = note.slice(0, split + 1);
  // name+keyhash+base64: the base64 may hold "+" itself, so only the first two separate.
  const first = vkey.indexOf("+");
  const second = vkey.indexOf("+", first + 1);
  const [name, keyHash, keyB64] = [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
  const key = bytes(keyB64);
  if (key[0] !== 1 || key.length !== 33) throw new Error("the ledger key is not an Ed25519 note key");
  const publicKey = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
  const lines = note.slice(split + 2).split("\n").filter((l) => l.startsWith("\u2014 " + name + " "));
  let signed = false;
  for (const line of lines) {
    const sig = bytes(line.split(" ")[2]);
    const id = Array.from(sig.slice(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
    if (id === keyHash && await crypto.subtle.verify({ name: "Ed25519" }, publicKey, sig.slice(4), text(body))) {
      signed = true;
    }
  }
  if (!signed) throw new Error("the checkpoint's signature does not verify with the ledger key");
  const [origin, size, root] = body.split("\n");
  if (origin !== name) throw new Error("the checkpoint is for another log");
  return { size: Number(size), root: bytes(root) };
}

async function verify(el) {
  const checkpoint = await checkpointRoot(el.dataset.checkpoint, el.dataset.key);
  const size = Number(el.dataset.size);
  if (checkpoint.size !== size) throw new Error("the proof is for another tree size than the checkpoint's");
  const leaf = await sha256(concat([0], bytes(el.dataset.entry)));
  if (!equal(leaf, bytes(el.dataset.leaf))) throw new Error("the entry does not hash to its leaf");
  const path = el.dataset.proof ? el.dataset.proof.split(",").map(bytes) : [];
  const root = await rootFrom(Number(el.dataset.index), size, leaf, path);
  if (!equal(root, checkpoint.root)) throw new Error("the proof does not lead to the checkpoint's root");
}

const odd = (n) => n % 2 === 1;
const half = (n) => Math.floor(n / 2);

// RFC 9162 2.1.4.2: whether `proof` shows the tree of `first` entries (root `firstRoot`) is a
// prefix of the tree of `second` entries (root `secondRoot`).
async function consistent(first, second, firstRoot, secondRoot, proof) {
  if (first > second) throw new Error("the ledger is smaller than when this browser last saw it");
  if (first === second) {
    if (!equal(firstRoot, secondRoot)) throw new Error("the ledger's root changed at the same size");
    return;
  }
  if (first === 0) return;
  const path = (first & (first - 1)) === 0 && first < 2 ** 31 ? [firstRoot, ...proof] : proof;
  if (path.length === 0) throw new Error("the consistency proof is empty");
  let fn = first - 1, sn = second - 1;
  while (odd(fn)) { fn = half(fn); sn = half(sn); }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) throw new Error("the consistency proof is too long");
    if (odd(fn) || fn === sn) {
      fr = await sha256(concat([1], c, fr));
      sr = await sha256(concat([1], c, sr));
      if (!odd(fn)) { while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); } }
    } else {
      sr = await sha256(concat([1], sr, c));
    }
    fn = half(fn); sn = half(sn);
  }
  if (sn !== 0) throw new Error("the consistency proof is too short");
  if (!equal(fr, firstRoot) || !equal(sr, secondRoot)) {
    throw new Error("the ledger this browser saw before is not a prefix of this one");
  }
}

const b64 = (a) => btoa(String.fromCharCode(...a));

async function checkLedger(el, result) {
  const checkpoint = await checkpointRoot(el.dataset.checkpoint, el.dataset.key);
  const memory = "reins-ledger:" + el.dataset.key;
  const seen = JSON.parse(localStorage.getItem(memory) || "null");
  let said = "Verified in your browser: the latest checkpoint (" + checkpoint.size +
    " entries) is signed by the ledger key.";
  if (seen) {
    let hashes = [];
    if (seen.size > 0 && seen.size < checkpoint.size) {
      const answer = await fetch("/console/ledger/consistency?from=" + seen.size + "&to=" + checkpoint.size,
        { credentials: "same-origin" });
      if (!answer.ok) throw new Error("the server gave no consistency proof (" + answer.status + ")");
      hashes = (await answer.json()).hashes.map(bytes);
    }
    await consistent(seen.size, checkpoint.size, bytes(seen.root), checkpoint.root, hashes);
    said += " The ledger of " + seen.size + " entries this browser saw on " + seen.at +
      " is a prefix of it: nothing it held was changed or removed.";
  } else {
    said += " This browser had not seen the ledger before; from now on it checks that the ledger only grows.";
  }
  localStorage.setItem(memory, JSON.stringify(
    { size: checkpoint.size, root: b64(checkpoint.root), at: new Date().toISOString() }));
  result.className = "verified";
  result.textContent = said;
}

async function runLedger() {
  const el = document.getElementById("ledger-check");
  const result = document.getElementById("ledger-result");
  if (!el || !result) return;
  result.className = "pending";
  result.textContent = "Verifying in your browser…";
  try {
    await checkLedger(el, result);
  } catch (e) {
    result.className = "failed";
    result.textContent = "Does NOT verify: " + e.message + ".";
  }
}

async function run() {
  const el = document.getElementById("proof");
  const result = document.getElementById("verify-result");
  if (!el || !result) return;
  result.className = "pending";
  result.textContent = "Verifying in your browser…";
  try {
    await verify(el);
    result.className = "verified";
    result.textContent = "Verified in your browser: this entry is in the ledger whose checkpoint the ledger key signed.";
  } catch (e) {
    result.className = "failed";
    result.textContent = "Does NOT verify: " + e.message + ".";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  run();
  runLedger();
  const again = document.getElementById("verify-again");
  if (again) again.addEventListener("click", run);
  const ledgerAgain = document.getElementById("ledger-verify");
  if (ledgerAgain) ledgerAgain.addEventListener("click", runLedger);
});
