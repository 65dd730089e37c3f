// The dynamic page: rendered per request by the app role; its assets come from the fileserver.
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

export function page({ visits, shared, mail = [], mailEvents = [], urls, build, node }) {
  const assets = escape(urls.assets)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>espra-node sample app</title>
<link rel="stylesheet" href="${assets}/app/public/style.css">
<script>window.ESPRA = ${JSON.stringify({ live: urls.live, files: urls.files }).replace(/</g, '\\u003c')}</script>
<script src="${assets}/app/public/client.js" defer></script>
</head>
<body>
<header>
  <h1>espra-node sample app</h1>
  <p>This page was rendered by the <b>app</b> role (node <code>${escape(node)}</code>, build <code>${escape(build)}</code>); visit <b id="visits">${visits}</b>, counted in the app's tables.
  Its style and script come from the <b>fileserver</b> (<a href="${assets}/app/public/about.html">about this app</a>, a static page); shared files are served from a host of their own.</p>
</header>
<main>
  <form id="join">
    <label>Your name <input id="name" name="name" maxlength="32" required></label>
    <button>Join the chat</button>
  </form>
  <section id="room" hidden>
    <h2>Lobby <small>(<span id="online">0</span> online: <span id="members"></span>)</small></h2>
    <ol id="messages"></ol>
    <form id="say"><input id="text" autocomplete="off" maxlength="500" placeholder="Say something"><button>Send</button></form>
    <h2>Share a file</h2>
    <form id="upload" method="post" enctype="multipart/form-data" target="upload-frame">
      <input type="file" name="file" id="file" required>
      <button>Upload</button>
      <progress id="progress" max="100" value="0"></progress> <span id="progress-text"></span>
    </form>
    <iframe name="upload-frame" hidden></iframe>
  </section>
  <h2>Shared lately</h2>
  <ul id="shared">${shared.map((f) => `<li><a href="${escape(f.url)}">${escape(f.filename)}</a> (${escape(f.size)} bytes) by ${escape(f.name)}</li>`).join('')}</ul>
  <h2>Mail received lately</h2>
  <p>Send this app a message through the <b>mail</b> role: <code>swaks --to anyone@localhost --server 127.0.0.1:&lt;smtp port&gt;</code> (<code>espra-node up</code> prints the port).</p>
  <ul id="mail">${mail.map((m) => `<li><b>${escape(m.subject || '(no subject)')}</b> from ${escape(m.from)} to ${escape(m.to)}${m.attachments ? ` (${escape(m.attachments)} attachments)` : ''}: ${escape(m.text)}</li>`).join('')}</ul>
  <h2>Mail sent lately</h2>
  <p>Send a note with <code>ctx.sendMail</code>: <code>curl -d '{"to":"anyone@localhost","text":"hi"}' &lt;app url&gt;/api/mail</code>. Each step of its delivery comes back through <code>handleMailEvent</code>.</p>
  <ul id="mail-events">${mailEvents.map((e) => `<li><code>${escape(e.message)}</code> ${escape(e.type)} ${escape(e.rcpts)}${e.detail ? `: ${escape(e.detail)}` : ''}</li>`).join('')}</ul>
</main>
</body>
</html>
`
}
