// A small horizontal bar chart (SVG, no dependencies) of generated-vs-baseline throughput ratios,
// with the 100% line and the 97% target marked.

export interface RatioBar {
  label: string;
  ratio: number;
}

export function ratioChart(bars: RatioBar[]): string {
  const rowHeight = 26;
  const labelWidth = 230;
  const plotWidth = 420;
  const top = 30;
  const height = top + bars.length * rowHeight + 30;
  const min = 0.5;
  const max = 1.1;
  const x = (ratio: number) =>
    labelWidth + ((Math.min(Math.max(ratio, min), max) - min) / (max - min)) * plotWidth;
  const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const rows = bars.map((bar, i) => {
    const y = top + i * rowHeight;
    const color = bar.ratio >= 0.97 ? '#2f855a' : '#c53030';
    return [
      `<text x="${labelWidth - 8}" y="${y + 17}" text-anchor="end">${escapeXml(bar.label)}</text>`,
      `<rect x="${x(min)}" y="${y + 5}" width="${x(bar.ratio) - x(min)}" height="16" fill="${color}"/>`,
      `<text x="${x(bar.ratio) + 4}" y="${y + 17}">${(bar.ratio * 100).toFixed(1)}%</text>`,
    ].join('');
  });
  const line = (ratio: number, dash: string, label: string) =>
    `<line x1="${x(ratio)}" y1="${top - 5}" x2="${x(ratio)}" y2="${height - 25}" stroke="#333" stroke-dasharray="${dash}"/>` +
    `<text x="${x(ratio)}" y="${height - 10}" text-anchor="middle">${label}</text>`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + plotWidth + 70}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<text x="10" y="18" font-weight="bold">Throughput: generated adapter / baseline (higher is better)</text>',
    ...rows,
    line(1, '4 2', '100%'),
    line(0.97, '1 3', '97% target'),
    '</svg>',
    '',
  ].join('\n');
}
