// A unified diff (the API's /diff answer) as side-by-side rows: the server computes the
// diff once; this only lays it out. Runs of removed lines face the added lines after them.

export function sideBySide(unified) {
  const rows = [];
  let left = 0;
  let right = 0;
  let removed = [];
  let added = [];
  const flush = () => {
    const n = Math.max(removed.length, added.length);
    for (let i = 0; i < n; i++) {
      const l = removed[i];
      const r = added[i];
      rows.push({
        kind: l && r ? "changed" : l ? "removed" : "added",
        left: l ? l.text : null, leftNo: l ? l.no : null,
        right: r ? r.text : null, rightNo: r ? r.no : null,
      });
    }
    removed = [];
    added = [];
  };
  for (const line of unified.split("\n")) {
    if (line.startsWith("---") || line.startsWith("+++")) continue;
    const hunk = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(line);
    if (hunk) {
      flush();
      left = Number(hunk[1]);
      right = Number(hunk[2]);
      rows.push({ kind: "hunk", left: line, right: "" });
      continue;
    }
    if (line.startsWith("-")) removed.push({ no: left++, text: line.slice(1) });
    else if (line.startsWith("+")) added.push({ no: right++, text: line.slice(1) });
    else if (line.startsWith(" ")) {
      flush();
      rows.push({ kind: "same", left: line.slice(1), leftNo: left++, right: line.slice(1), rightNo: right++ });
    } else if (line.startsWith("\\")) {
      continue; // "\ No newline at end of file"
    }
  }
  flush();
  return rows;
}
