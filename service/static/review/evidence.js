// Evidence geometry for the review page: cutting a note into segments at every highlight
// boundary, and how strongly each span is drawn. Pure functions, no DOM.
//
// The API's offsets count Unicode code points; JavaScript strings index UTF-16 units, which
// differ as soon as a note holds a character outside the Basic Multilingual Plane (an emoji,
// some CJK). Everything here converts explicitly, so a highlight never lands one unit off.

/** UTF-16 index of every code point boundary: result[i] is where code point i starts. */
export function codePointIndex(text) {
  const starts = [0];
  let unit = 0;
  for (const character of text) {
    unit += character.length; // 1, or 2 for a surrogate pair
    starts.push(unit);
  }
  return starts; // length: code points + 1
}

/**
 * The note cut at every highlight boundary of every code.
 *
 * codes: [{code, description, highlights: [{start, end, weight}]}], offsets in code points.
 * Returns [{start, end, text, covers: [{code, description, weight}]}] covering the whole note in
 * order; `covers` names each code with a highlight over the segment (the heaviest such
 * highlight's weight when a code's spans overlap), heaviest first.
 */
export function segmentNote(text, codes) {
  const starts = codePointIndex(text);
  const length = starts.length - 1;
  const spans = [];
  for (const code of codes) {
    for (const highlight of code.highlights) {
      const start = Math.max(0, Math.min(length, highlight.start));
      const end = Math.max(start, Math.min(length, highlight.end));
      if (end > start) {
        spans.push({ code: code.code, description: code.description, start, end, weight: highlight.weight });
      }
    }
  }
  const cuts = new Set([0, length]);
  for (const span of spans) {
    cuts.add(span.start);
    cuts.add(span.end);
  }
  const boundaries = [...cuts].sort((a, b) => a - b);
  const segments = [];
  for (let i = 0; i + 1 < boundaries.length; i += 1) {
    const start = boundaries[i];
    const end = boundaries[i + 1];
    const byCode = new Map();
    for (const span of spans) {
      if (span.start <= start && span.end >= end) {
        const seen = byCode.get(span.code);
        if (seen === undefined || span.weight > seen.weight) {
          byCode.set(span.code, { code: span.code, description: span.description, weight: span.weight });
        }
      }
    }
    const covers = [...byCode.values()].sort((a, b) => b.weight - a.weight);
    segments.push({ start, end, text: text.slice(starts[start], starts[end]), covers });
  }
  return segments;
}

/**
 * How strongly to draw a span: 1 (faint) to 4 (strong), by its weight relative to the heaviest
 * span of the same code, so every code's best evidence is drawn at full strength.
 */
export function weightLevel(weight, heaviest) {
  if (!(heaviest > 0)) return 1;
  const ratio = weight / heaviest;
  if (ratio >= 0.75) return 4;
  if (ratio >= 0.5) return 3;
  if (ratio >= 0.25) return 2;
  return 1;
}

/** A weight as a whole percentage, for people. */
export function percent(weight) {
  return `${Math.round(weight * 100)}%`;
}

const FLAG_LABELS = { negated: "negated", hypothetical: "hypothetical", family: "family history" };

/**
 * Text tags for one evidence item: where it came from (`source`: "lexicon" or "attention") and
 * its context flags, when the API sends them. Flags may come as a list (["negated"]), an object
 * ({negated: true}) or booleans on the item itself; absent fields give no tag.
 */
export function evidenceTags(highlight) {
  const tags = [];
  if (typeof highlight.source === "string" && highlight.source) tags.push(highlight.source);
  const flags = highlight.flags;
  const raised = new Set();
  if (Array.isArray(flags)) {
    for (const flag of flags) raised.add(String(flag));
  } else if (flags && typeof flags === "object") {
    for (const [flag, on] of Object.entries(flags)) if (on) raised.add(flag);
  }
  for (const flag of Object.keys(FLAG_LABELS)) if (highlight[flag] === true) raised.add(flag);
  for (const flag of raised) tags.push(FLAG_LABELS[flag] ?? flag);
  return tags;
}
