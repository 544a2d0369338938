// Checks the UI's dictionaries: ja and en have the same keys, the same {placeholders}, no empty
// strings, and every key that app.js or index.html names exists (also the keys app.js builds from
// API values, listed below). Exits 1 on any problem.
// Usage: node crates/kura-server/ui/check-i18n.mjs
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const dir = dirname(fileURLToPath(import.meta.url));
const read = (name) => readFileSync(join(dir, name), 'utf8');

const sandbox = {};
vm.createContext(sandbox);
vm.runInContext(read('i18n.js'), sandbox, { filename: 'i18n.js' });
const dicts = sandbox.KURA_I18N;
const problems = [];

if (!dicts || typeof dicts.ja !== 'object' || typeof dicts.en !== 'object') {
  console.error('i18n.js must set globalThis.KURA_I18N = { ja: {...}, en: {...} }');
  process.exit(1);
}

const placeholders = (s) => [...String(s).matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(',');
for (const [a, b] of [['ja', 'en'], ['en', 'ja']]) {
  for (const key of Object.keys(dicts[a])) {
    if (!(key in dicts[b])) problems.push(`key "${key}" is in ${a} but not in ${b}`);
  }
}
for (const key of Object.keys(dicts.ja)) {
  for (const l of ['ja', 'en']) {
    const v = dicts[l][key];
    if (v !== undefined && (typeof v !== 'string' || v.trim() === '')) problems.push(`${l}."${key}" is empty or not a string`);
  }
  if (key in dicts.en && placeholders(dicts.ja[key]) !== placeholders(dicts.en[key])) {
    problems.push(`"${key}" has placeholders {${placeholders(dicts.ja[key])}} in ja but {${placeholders(dicts.en[key])}} in en`);
  }
}

// Keys named literally in the code and markup.
const app = read('app.js');
const html = read('index.html');
const used = new Set();
for (const m of app.matchAll(/(?<![\w$.])t\('([^'\\]+)'\s*[,)]/g)) used.add(m[1]);
for (const m of html.matchAll(/data-i18n(?:-placeholder)?="([^"]+)"/g)) used.add(m[1]);
for (const key of used) {
  if (!(key in dicts.ja)) problems.push(`"${key}" is used but not defined`);
}

// Keys built at run time from values the API returns (docs/api.md).
const dynamic = {
  'status.': ['running', 'completed', 'refused', 'failed', 'cancelled'],
  // Review states (kura-airlock State) and 'staged' from before the airlock.
  'outputStatus.': ['staged', 'draft', 'submitted', 'changes_requested', 'rejected', 'approved', 'released', 'withdrawn'],
  'guide.author.': ['draft', 'submitted', 'changes_requested', 'approved', 'released', 'rejected', 'withdrawn', 'other'],
  'decision.': ['approve', 'request_changes', 'reject'],
  'outcome.': ['approved', 'changes_requested', 'rejected', 'withdrawn'],
  'awaiting.': ['first_checker', 'second_checker', 'tiebreaker'],
  'event.': ['opened', 'context_saved', 'submitted', 'voted', 'round_closed', 'withdrawn', 'release_refused', 'released'],
  'rule.': ['row_level', 'age_bands', 'unclassified', 'threshold', 'institutions', 'municipality', 'dominance',
    'p_ratio', 'dof', 'differencing', 'secondary'],
  'action.': ['publish', 'suppress', 'round'],
  'relation.': ['same', 'inside_released', 'contains_released'],
  'role.': ['researcher', 'observer', 'checker', 'steward', 'supervisor'],
  'source.': ['local', 'oidc'],
  'projects.state.': ['expired', 'upcoming'],
  'workspace.inactive.': ['expired', 'upcoming'],
  // The explorer's form fields (with 'place' for regions and prefectures together) and views.
  'explorer.field.': ['diseases', 'severity', 'age_bands', 'sex', 'place', 'regions', 'prefectures', 'diagnosis_category',
    'treatments', 'ventilator', 'fiscal_years'],
  'explorer.view.': ['by_prefecture', 'by_severity', 'by_institutions'],
  'explorer.dim.': ['by_prefecture', 'by_severity', 'by_institutions'],
};
for (const m of app.matchAll(/(?<![\w$.])t\('([^'\\]+\.)'\s*\+/g)) {
  if (!(m[1] in dynamic) && m[1] !== 'query.error.') problems.push(`app.js builds keys from "${m[1]}" but the check does not know its values`);
}
// tv('prefix.', value): a label for an API value (the value itself when the key is missing).
for (const m of app.matchAll(/(?<![\w$.])tv\('([^'\\]+\.)'\s*,/g)) {
  if (!(m[1] in dynamic)) problems.push(`app.js labels values with "${m[1]}" but the check does not know them`);
}
for (const [prefix, values] of Object.entries(dynamic)) {
  for (const v of values) if (!(prefix + v in dicts.ja)) problems.push(`"${prefix + v}" is needed but not defined`);
}

if (problems.length) {
  for (const p of problems) console.error('i18n: ' + p);
  process.exit(1);
}
console.log(`i18n: ok (${Object.keys(dicts.ja).length} keys in ja and en, ${used.size} used literally)`);
