// A small horizontal bar chart (SVG, no dependencies) of generated-vs-baseline throughput ratios,
// with the 100% line and the 97% target marked, and where given a marker for generated against the
// baseline with AsyncLocalStorage switched on (what is left is the adapter's own cost).

export interface RatioBar {
  label: string;
  ratio: number;
  /** Generated / baseline with AsyncLocalStorage on, drawn as a marker on the bar's row. */
  alsRatio?: number;
  /** The ratio's 95% confidence interval, drawn as a whisker across the bar's end. */
  interval?: [number, number];
}

export function ratioChart(bars: RatioBar[]): string {
  const rowHeight = 26;
  const labelWidth = 230;
  const plotWidth = 420;
  const top = 30;
  const hasAls = bars.some((bar) => bar.alsRatio !== undefined);
  const bottom = top + bars.length * rowHeight;
  const height = bottom + (hasAls ? 50 : 30) + (bars.some((bar) => bar.interval) ? 18 : 0);
  const min = 0.5;
  const max = 1.1;
  const x = (ratio: number) =>
    labelWidth + ((Math.min(Math.max(ratio, min), max) - min) / (max - min)) * plotWidth;
  const marker = (cx: number, cy: number) =>
    `<path d="M${cx} ${cy - 6} L${cx + 5} ${cy} L${cx} ${cy + 6} L${cx - 5} ${cy} Z" fill="#fff" stroke="#111" stroke-width="1.5"/>`;
  const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const rows = bars.map((bar, i) => {
    const y = top + i * rowHeight;
    const color = bar.ratio >= 0.97 ? '#2f855a' : '#c53030';
    const als = bar.alsRatio;
    const interval = bar.interval;
    // The bar's label goes past the marker and the whisker when they lie beyond the bar.
    const labelAt =
      Math.max(
        x(bar.ratio),
        als === undefined ? 0 : x(als) + 4,
        interval === undefined ? 0 : x(interval[1]),
      ) + 4;
    const whisker =
      interval === undefined
        ? ''
        : `<path d="M${x(interval[0])} ${y + 9} v8 M${x(interval[0])} ${y + 13} H${x(interval[1])} M${x(interval[1])} ${y + 9} v8" stroke="#111" fill="none"/>`;
    return [
      `<text x="${labelWidth - 8}" y="${y + 17}" text-anchor="end">${escapeXml(bar.label)}</text>`,
      `<rect x="${x(min)}" y="${y + 5}" width="${x(bar.ratio) - x(min)}" height="16" fill="${color}"/>`,
      whisker,
      als === undefined ? '' : marker(x(als), y + 13),
      `<text x="${labelAt}" y="${y + 17}">${(bar.ratio * 100).toFixed(1)}%` +
        (als === undefined ? '' : ` (${(als * 100).toFixed(1)}%)`) +
        '</text>',
    ].join('');
  });
  const line = (ratio: number, dash: string, label: string) =>
    `<line x1="${x(ratio)}" y1="${top - 5}" x2="${x(ratio)}" y2="${bottom + 5}" stroke="#333" stroke-dasharray="${dash}"/>` +
    `<text x="${x(ratio)}" y="${bottom + 20}" text-anchor="middle">${label}</text>`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + plotWidth + (hasAls ? 120 : 70)}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<text x="10" y="18" font-weight="bold">Throughput: generated adapter / baseline (higher is better)</text>',
    ...rows,
    line(1, '4 2', '100%'),
    line(0.97, '1 3', '97% target'),
    hasAls
      ? `${marker(labelWidth, bottom + 38)}<text x="${labelWidth + 10}" y="${bottom + 42}">` +
        "generated / baseline with AsyncLocalStorage on (in brackets): the adapter's own cost</text>"
      : '',
    bars.some((bar) => bar.interval)
      ? `<text x="${labelWidth}" y="${height - 6}">|—| 95% confidence interval of the median ratio</text>`
      : '',
    '</svg>',
    '',
  ].join('\n');
}
