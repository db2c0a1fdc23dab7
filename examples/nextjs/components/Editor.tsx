'use client'
// Rich text: ProseMirror bound to the provider's Y.Doc by y-prosemirror,
// with remote cursors and selections from the awareness states.
import { useEffect, useRef } from 'react'
import { Schema } from 'prosemirror-model'
import { schema as basic } from 'prosemirror-schema-basic'
import { addListNodes } from 'prosemirror-schema-list'
import { EditorState } from 'prosemirror-state'
import { EditorView } from 'prosemirror-view'
import { keymap } from 'prosemirror-keymap'
import { exampleSetup } from 'prosemirror-example-setup'
import { ySyncPlugin, yCursorPlugin, yUndoPlugin, undo, redo } from 'y-prosemirror'
import type { CollabProvider } from '@collab-engine/client'

const schema = new Schema({
  nodes: addListNodes(basic.spec.nodes, 'paragraph block*', 'block'),
  marks: basic.spec.marks
})

export default function Editor ({ provider }: { provider: CollabProvider }) {
  const mount = useRef<HTMLDivElement>(null)

  useEffect(() => {
    const fragment = provider.doc.getXmlFragment('prosemirror')
    const view = new EditorView(mount.current!, {
      state: EditorState.create({
        schema,
        plugins: [
          ySyncPlugin(fragment),
          yCursorPlugin(provider.awareness),
          yUndoPlugin(),
          keymap({ 'Mod-z': undo, 'Mod-y': redo, 'Mod-Shift-z': redo }),
          ...exampleSetup({ schema, history: false })
        ]
      })
    })
    return () => view.destroy()
  }, [provider])

  return <div ref={mount} className='editor' data-testid='editor' />
}
