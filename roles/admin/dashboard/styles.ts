/** The dashboard's one stylesheet (served as /dashboard/assets/dashboard.css): dense, readable, no web fonts. */
export const DASHBOARD_CSS = `
:root { --bg: #f6f7f9; --fg: #1d2329; --mute: #5f6b76; --line: #d9dee3; --card: #fff; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --acc: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
code, .mono, td.num, td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
a { color: var(--acc); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible { outline: 2px solid var(--acc); outline-offset: 1px; }
header.top { display: flex; gap: 16px; align-items: center; padding: 6px 14px; background: #1d2329; color: #fff; position: sticky; top: 0; z-index: 5; }
header.top .brand { font-weight: 600; }
header.top nav a { color: #cfd6dd; text-decoration: none; padding: 4px 8px; border-radius: 4px; }
header.top nav a.on, header.top nav a:hover { background: #38424c; color: #fff; }
header.top .link { margin-left: auto; font-size: 12px; }
header.top .who { color: #cfd6dd; font-size: 12px; }
header.top button { background: #38424c; color: #fff; border: 0; }
main { padding: 12px 14px; }
h1 { font-size: 18px; margin: 0 0 10px; }
h2 { font-size: 14px; margin: 16px 0 6px; }
h3 { font-size: 13px; margin: 10px 0 4px; color: var(--mute); text-transform: uppercase; letter-spacing: .03em; }
button { font: inherit; padding: 3px 10px; border: 1px solid var(--line); background: var(--card); border-radius: 4px; cursor: pointer; }
button.danger { border-color: var(--bad); color: var(--bad); }
button.primary { background: var(--acc); border-color: var(--acc); color: #fff; }
input, select { font: inherit; padding: 3px 6px; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; color: var(--mute); background: #eef1f4; position: sticky; top: 34px; }
td.num, th.num { text-align: right; }
table.nodes { table-layout: fixed; }
table.nodes th:nth-child(1) { width: 17%; } table.nodes th:nth-child(9) { width: 10%; }
table.nodes td { overflow: hidden; text-overflow: ellipsis; }
td.wrap { white-space: normal; word-break: break-word; }
tr.flash td { background: #fff8c5; transition: background 1s; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; font-weight: 600; color: #fff; background: var(--mute); }
.badge.ok { background: var(--ok); } .badge.degraded, .badge.draining, .badge.open { background: var(--warn); } .badge.suspect, .badge.down, .badge.refused, .badge.failed { background: var(--bad); }
.badge.live, .badge.resolved { background: var(--ok); }
.cards { display: flex; gap: 10px; flex-wrap: wrap; margin-bottom: 10px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 110px; }
.card .v { font-size: 20px; font-weight: 600; } .card .k { color: var(--mute); font-size: 11px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 10px; margin: 10px 0; }
.chart { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 6px; min-height: 60px; }
.mute { color: var(--mute); }
.error { color: var(--bad); min-height: 1.4em; }
.toast { position: fixed; bottom: 12px; right: 12px; background: #1d2329; color: #fff; padding: 6px 12px; border-radius: 6px; display: none; max-width: 60ch; }
.toast.show { display: block; }
.toast.bad { background: var(--bad); }
.row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin: 6px 0; }
dialog { border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; max-width: 60ch; }
dialog::backdrop { background: rgba(0,0,0,.3); }
main.login { max-width: 380px; margin: 12vh auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 20px 24px; }
main.login label { display: block; margin-bottom: 4px; color: var(--mute); }
main.login input { width: 100%; margin-bottom: 10px; padding: 6px; }
main.login .hint { color: var(--mute); font-size: 12px; }
dl.figures { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; background: var(--card); border: 1px solid var(--line); padding: 8px 12px; margin: 0; }
dl.figures dt { color: var(--mute); } dl.figures dd { margin: 0; font-family: ui-monospace, monospace; font-size: 12px; }
`
