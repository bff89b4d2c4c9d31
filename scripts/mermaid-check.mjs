// Parses a Mermaid file with the real mermaid parser (in jsdom); exit 1 if it is invalid.
// Used by scripts/check-mermaid.
import { JSDOM } from 'jsdom';
const dom = new JSDOM('<!DOCTYPE html><body></body>');
globalThis.window = dom.window; globalThis.document = dom.window.document;
Object.defineProperty(globalThis, 'navigator', { value: dom.window.navigator, configurable: true });
const { default: mermaid } = await import('mermaid');
import fs from 'fs';
const text = fs.readFileSync(process.argv[2], 'utf8');
try { const r = await mermaid.parse(text); console.log('valid', JSON.stringify(r)); }
catch (e) { console.error('INVALID', e.message || e); process.exit(1); }
