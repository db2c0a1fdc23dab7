// A minimal Hocuspocus server for the comparison: no extensions, so no
// persistence and no authentication hook (any token is accepted), on
// 127.0.0.1:$PORT. Documents are named in every frame, not by the URL.
import { Server } from '@hocuspocus/server'

const port = Number.parseInt(process.env.PORT ?? '', 10)
if (!Number.isInteger(port) || port <= 0) {
  console.error('set PORT to the port to listen on')
  process.exit(2)
}

const server = new Server({ port, address: '127.0.0.1', quiet: true })
await server.listen()
console.log(`Hocuspocus server on 127.0.0.1:${port}`)

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0))
}
