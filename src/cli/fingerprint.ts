// Fingerprints of file contents: the manifest's record of what a run wrote, and the names of the
// JavaScript the build converted ahead of time. They only have to tell one text from another, not
// stand up to an attacker, so a small string hash does; node:crypto's sha256 would cost every run
// about 10 ms just to load (bench/cli).

/** cyrb53 (bryc, public domain): a 53-bit hash of `text`, as 14 hex digits. */
export function fingerprint(text: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ code, 2654435761);
    h2 = Math.imul(h2 ^ code, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0');
}
