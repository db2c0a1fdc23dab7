// The reference y-websocket server for the comparison: the package's own
// `setupWSConnection` on a `ws` server, in memory (no persistence, no
// callback), on 127.0.0.1:$PORT. The document is the URL path, as with
// the package's own bin: ws://127.0.0.1:PORT/{doc}.
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { setupWSConnection, setPersistence } from '@y/websocket-server/utils'

const port = Number.parseInt(process.env.PORT ?? '', 10)
if (!Number.isInteger(port) || port <= 0) {
  console.error('set PORT to the port to listen on')
  process.exit(2)
}

// utils.js enables LevelDB persistence when YPERSISTENCE is set at import
// time; run.sh unsets it, and this makes sure.
setPersistence(null)

const wss = new WebSocketServer({ noServer: true })
wss.on('connection', setupWSConnection)

const server = http.createServer((_request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/plain' })
  response.end('okay')
})
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => {
    wss.emit('connection', ws, request)
  })
})
server.listen(port, '127.0.0.1', () => {
  console.log(`y-websocket reference server on 127.0.0.1:${port}`)
})

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0))
}
