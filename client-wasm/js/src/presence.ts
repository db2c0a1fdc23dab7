// Presence: who is here, their cursors and selections, over the y-protocols
// awareness object the provider keeps (so editor bindings such as
// y-prosemirror's cursor plugin and y-codemirror read the same states).
import * as Y from 'yjs'
import type { Awareness } from 'y-protocols/awareness'
import { Emitter } from './events.js'

/** How a person appears to others. Editor bindings read `name` and `color`. */
export interface PresenceUser {
  name: string
  color?: string
  [field: string]: unknown
}

/** A selection in a shared text, anchored to content rather than offsets. */
export interface PresenceSelection {
  /** The root text it is in. */
  text: string
  /** `Y.RelativePosition` as JSON. */
  anchor: unknown
  /** `Y.RelativePosition` as JSON. */
  head: unknown
}

/** Someone connected to the document, as their awareness state says. */
export interface Peer {
  /** Their awareness client id (their `Y.Doc`'s client id). */
  clientId: number
  /** Whether this is the local user. */
  isLocal: boolean
  /** Their `user` field. */
  user?: PresenceUser
  /** Their selection, if they set one with {@link Presence.setSelection}. */
  selection?: PresenceSelection
  /** Their whole awareness state. */
  state: Record<string, unknown>
}

/** Presence of one document. */
export class Presence extends Emitter<{ change: [Peer[]] }> {
  private readonly onChange = (): void => this.emit('change', this.peers())

  constructor (readonly awareness: Awareness) {
    super()
    awareness.on('change', this.onChange)
  }

  /** Sets how the local user appears to others. */
  setUser (user: PresenceUser): void {
    this.awareness.setLocalStateField('user', user)
  }

  /** Sets any field of the local state (editor bindings use `cursor`). */
  set (field: string, value: unknown): void {
    this.awareness.setLocalStateField(field, value)
  }

  /**
   * Shares the local selection in root text `text`, from offset `anchor` to
   * `head` (equal for a caret). Offsets are kept relative to the content, so
   * others' edits move the selection as they should.
   */
  setSelection (doc: Y.Doc, text: string, anchor: number, head: number = anchor): void {
    const type = doc.getText(text)
    this.awareness.setLocalStateField('selection', {
      text,
      anchor: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(type, anchor)),
      head: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(type, head))
    } satisfies PresenceSelection)
  }

  /** Clears the local selection. */
  clearSelection (): void {
    this.awareness.setLocalStateField('selection', null)
  }

  /** Where `peer`'s selection is now, as offsets in its text; `undefined` if it has none. */
  selectionOf (doc: Y.Doc, peer: Peer): { anchor: number, head: number } | undefined {
    const selection = peer.selection
    if (selection == null) return undefined
    const resolve = (json: unknown): number | undefined => {
      const position = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), doc)
      return position === null ? undefined : position.index
    }
    const anchor = resolve(selection.anchor)
    const head = resolve(selection.head)
    return anchor === undefined || head === undefined ? undefined : { anchor, head }
  }

  /** Everyone here, the local user first, then by client id. */
  peers (): Peer[] {
    const local = this.awareness.clientID
    const peers: Peer[] = []
    for (const [clientId, state] of this.awareness.getStates()) {
      peers.push({
        clientId,
        isLocal: clientId === local,
        user: state.user as PresenceUser | undefined,
        selection: (state.selection ?? undefined) as PresenceSelection | undefined,
        state
      })
    }
    return peers.sort((a, b) => Number(b.isLocal) - Number(a.isLocal) || a.clientId - b.clientId)
  }

  /** Stops emitting `change`. */
  destroy (): void {
    this.awareness.off('change', this.onChange)
    this.removeAllListeners()
  }
}
