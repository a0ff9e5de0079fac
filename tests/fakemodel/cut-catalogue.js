#!/usr/bin/env node
// cut-catalogue.js - prints, as JSON, the providers named on the command
// line from the model catalogue built into an opencode binary: the file
// AGENT_MODELS_FILE takes (tests/fakemodel/models.json is its output for
// "anthropic openai" on the pinned opencode). Run it again when opencode's
// version changes:
//
//   node tests/fakemodel/cut-catalogue.js BINARY anthropic openai \
//       > tests/fakemodel/models.json
//
// opencode keeps models.dev's catalogue as one object literal of minified
// JavaScript, returned by an arrow function (`=>({deepinfra:{id:...`). The
// script finds the first provider named, walks back to the nearest `({`
// whose object (strings and nesting followed) encloses it, and evaluates
// that literal alone in an empty context: no code of the binary runs.
// Keys are sorted, so a new version's changes show as a readable diff.
'use strict';
const fs = require('fs');
const vm = require('vm');

function fail(msg) {
    process.stderr.write('cut-catalogue: ' + msg + '\n');
    process.exit(1);
}

// The index just past the object literal opening at text[start] ('{'), or
// -1 when the text ends first.
function objectEnd(text, start) {
    let depth = 0;
    for (let i = start; i < text.length; i++) {
        const c = text[i];
        if (c === '"' || c === "'" || c === '`') {
            for (i++; i < text.length && text[i] !== c; i++)
                if (text[i] === '\\')
                    i++;
        } else if (c === '{') {
            depth++;
        } else if (c === '}' && --depth === 0) {
            return i + 1;
        }
    }
    return -1;
}

function catalogue(bytes, first) {
    const text = bytes.toString('latin1');
    const at = text.indexOf(first + ':{id:"' + first + '"');
    if (at < 0)
        fail('no provider "' + first + '" in the binary');
    for (let from = text.lastIndexOf('({', at); from >= 0 && at - from < 8e6;
         from = text.lastIndexOf('({', from - 1)) {
        const end = objectEnd(text, from + 1);
        if (end > at)
            return vm.runInNewContext('(' + bytes.toString('utf8', from + 1, end) + ')', {},
                                      { timeout: 5000 });
    }
    return fail('no object literal encloses provider "' + first + '"');
}

function sorted(v) {
    if (Array.isArray(v))
        return v.map(sorted);
    if (v === null || typeof v !== 'object')
        return v;
    const out = {};
    for (const k of Object.keys(v).sort())
        out[k] = sorted(v[k]);
    return out;
}

const [binary, ...providers] = process.argv.slice(2);
if (!binary || providers.length === 0)
    fail('usage: cut-catalogue.js OPENCODE_BINARY PROVIDER...');
// The search reads the binary as latin1 (one character per byte, so its
// indices are byte offsets); the literal found is decoded as UTF-8.
const all = catalogue(fs.readFileSync(binary), providers[0]);
const out = {};
for (const p of providers) {
    if (!all[p] || typeof all[p].models !== 'object')
        fail('provider "' + p + '" is not in the catalogue');
    out[p] = sorted(all[p]);
}
process.stdout.write(JSON.stringify(out));
