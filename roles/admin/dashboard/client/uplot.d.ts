/** The little of uPlot's API the charts use (uPlot.iife.min.js defines the global). */
declare class uPlot {
  constructor(opts: Record<string, unknown>, data: (number | null)[][], target: HTMLElement)
  setData(data: (number | null)[][]): void
  setSize(size: { width: number; height: number }): void
  destroy(): void
}
